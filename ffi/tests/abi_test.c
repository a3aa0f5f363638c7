/* Tests of the C ABI, run by scripts/test.sh under AddressSanitizer and LeakSanitizer:
 *
 *   abi_test TINY_FIXTURES_DIR ENC_MEAN_TOLERANCE OUT_DIR   every check below
 *   abi_test --same-png A.png B.png                          exits 0 when the pixels are equal
 */
#include "ldmae.h"
#include "../examples/png.h"

#include <math.h>
#include <pthread.h>

static int failures = 0;
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (last error: %s)\n", ldmae_last_error());        \
        }                                                                      \
    } while (0)

/* A status and a non-empty message. */
#define EXPECT(call, status)                                                                  \
    do {                                                                                      \
        LdmaeStatus got_ = (call);                                                            \
        CHECK(got_ == (status), "%s returned %d, expected %d", #call, (int)got_, (int)(status)); \
        CHECK(strlen(ldmae_last_error()) > 0, "no message after %s", #call);                  \
    } while (0)

static char path_buf[4096];
static const char *join(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* A float32 .npy file (format 1.0, '<f4'); *count values. */
static float *read_npy(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t head[10];
    float *values = NULL;
    if (fread(head, 1, 10, f) == 10 && !memcmp(head, "\x93NUMPY\x01", 7)) {
        size_t header_len = head[8] | (size_t)head[9] << 8;
        char *header = calloc(header_len + 1, 1);
        if (fread(header, 1, header_len, f) == header_len && strstr(header, "'<f4'")) {
            long start = ftell(f);
            fseek(f, 0, SEEK_END);
            *count = (size_t)(ftell(f) - start) / 4;
            fseek(f, start, SEEK_SET);
            values = malloc(*count * 4);
            if (fread(values, 4, *count, f) != *count) {
                free(values);
                values = NULL;
            }
        }
        free(header);
    }
    fclose(f);
    return values;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc(*len ? *len : 1);
    if (fread(bytes, 1, *len, f) != *len) {
        free(bytes);
        bytes = NULL;
    }
    fclose(f);
    return bytes;
}

static int write_file(const char *path, const uint8_t *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(bytes, 1, len, f) == len;
    if (f) fclose(f);
    return ok ? 0 : -1;
}

/* A smooth test picture, 300x200, as RGB (tight) and BGRA (rows of `stride` bytes). */
enum { W = 300, H = 200, STRIDE = 1232 };
static uint8_t rgb[W * H * 3], bgra[STRIDE * H];
static void make_picture(void) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                double v = 128 + 80 * sin(0.03 * x + 0.05 * y + 2.0 * c) + 30 * cos(0.011 * x * y / 40.0);
                uint8_t b = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                rgb[(y * W + x) * 3 + c] = b;
                bgra[y * STRIDE + 4 * x + (2 - c)] = b;
            }
}

static double psnr(const uint8_t *a, size_t a_step, const uint8_t *b, size_t b_step, size_t pixels) {
    double se = 0;
    for (size_t i = 0; i < pixels; i++)
        for (int c = 0; c < 3; c++) se += pow((double)a[i * a_step + c] - b[i * b_step + c], 2);
    return 10 * log10(255.0 * 255.0 / (se / (3.0 * pixels)));
}

static int32_t cancel_at_once(uint32_t done, uint32_t total, void *user) {
    (void)done, (void)total;
    ++*(int *)user;
    return 1;
}

static int32_t count_calls(uint32_t done, uint32_t total, void *user) {
    (void)done, (void)total;
    ++*(int *)user;
    return 0;
}

struct job {
    LdmaeBuffer out;
    LdmaeStatus status;
    uint32_t threads;
};

static void *compress_on_thread(void *arg) {
    struct job *job = arg;
    LdmaeOptions opts;
    ldmae_options_default(&opts);
    opts.device = 1;
    opts.threads = job->threads;
    LdmaeCodec *codec = NULL;
    job->status = ldmae_codec_open(NULL, &opts, &codec);
    if (job->status == LDMAE_OK)
        job->status = ldmae_codec_compress(codec, bgra, W, H, STRIDE, LDMAE_BGRA8, 0, NULL, NULL, &job->out);
    ldmae_codec_free(codec);
    return NULL;
}

static int same_buffer(const LdmaeBuffer *a, const LdmaeBuffer *b) {
    return a->len == b->len && a->len && !memcmp(a->data, b->data, a->len);
}

static void test_codec(const char *out_dir) {
    LdmaeOptions opts;
    ldmae_options_default(&opts);
    CHECK(opts.device == 0 && opts.dtype == 0 && opts.threads == 0, "defaults");
    opts.device = 1;

    EXPECT(ldmae_codec_open(NULL, &opts, NULL), LDMAE_INVALID_ARGUMENT);
    LdmaeOptions bad = opts;
    bad.dtype = 7;
    LdmaeCodec *codec = (LdmaeCodec *)1;
    EXPECT(ldmae_codec_open(NULL, &bad, &codec), LDMAE_INVALID_ARGUMENT);
    CHECK(codec == NULL, "out is NULL after a failed open");
    EXPECT(ldmae_codec_open("/nonexistent/photo.pack", &opts, &codec), LDMAE_IO);

    if (ldmae_codec_open(NULL, &opts, &codec) != LDMAE_OK) {
        CHECK(0, "open the embedded photo codec");
        return;
    }
    LdmaeBuffer from_rgb = {0}, from_bgra = {0}, none = {0};
    CHECK(ldmae_codec_compress(codec, rgb, W, H, W * 3, LDMAE_RGB8, 0, NULL, NULL, &from_rgb) == LDMAE_OK, "rgb");
    CHECK(ldmae_codec_compress(codec, bgra, W, H, STRIDE, LDMAE_BGRA8, 0, NULL, NULL, &from_bgra) == LDMAE_OK, "bgra");
    CHECK(same_buffer(&from_rgb, &from_bgra), "strided BGRA compresses like tight RGB (%zu vs %zu bytes)",
          from_rgb.len, from_bgra.len);
    write_file(join(out_dir, "picture.ldz"), from_rgb.data, from_rgb.len);
    png_write(join(out_dir, "picture.png"), rgb, W, H, 3);

    /* Bad arguments: each a status and a message, the output left empty. */
    EXPECT(ldmae_codec_compress(NULL, rgb, W, H, W * 3, LDMAE_RGB8, 0, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, NULL, W, H, W * 3, LDMAE_RGB8, 0, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, rgb, W, H, W * 3 - 1, LDMAE_RGB8, 0, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, rgb, W, H, W * 3, 9, 0, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, rgb, W, H, W * 3, LDMAE_RGB8, 101, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, rgb, 0, H, W * 3, LDMAE_RGB8, 0, NULL, NULL, &none), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_compress(codec, rgb, W, H, W * 3, LDMAE_RGB8, 0, NULL, NULL, NULL), LDMAE_INVALID_ARGUMENT);
    CHECK(none.data == NULL && none.len == 0, "no buffer after failures");

    /* Round trip in RGBA and BGRA. */
    LdmaeImage rgba_back = {0}, bgra_back = {0};
    int calls = 0;
    CHECK(ldmae_codec_decompress(codec, from_rgb.data, from_rgb.len, LDMAE_RGBA8, count_calls, &calls, &rgba_back) ==
              LDMAE_OK,
          "decompress");
    CHECK(calls >= 1, "progress was called (%d)", calls);
    CHECK(rgba_back.width == W && rgba_back.height == H && rgba_back.stride == W * 4, "%ux%u stride %u",
          rgba_back.width, rgba_back.height, rgba_back.stride);
    CHECK(ldmae_codec_decompress(codec, from_rgb.data, from_rgb.len, LDMAE_BGRA8, NULL, NULL, &bgra_back) == LDMAE_OK,
          "decompress bgra");
    int alpha = 1, swapped = 1;
    for (size_t i = 0; rgba_back.pixels && bgra_back.pixels && i < (size_t)W * H; i++) {
        alpha &= rgba_back.pixels[4 * i + 3] == 255;
        swapped &= rgba_back.pixels[4 * i] == bgra_back.pixels[4 * i + 2] &&
                   rgba_back.pixels[4 * i + 2] == bgra_back.pixels[4 * i];
    }
    CHECK(alpha && swapped, "alpha 255 and BGRA = swapped RGBA");
    double quality = rgba_back.pixels ? psnr(rgb, 3, rgba_back.pixels, 4, (size_t)W * H) : 0;
    CHECK(quality > 20, "round trip at %.2f dB", quality);
    ldmae_image_free(&rgba_back);
    ldmae_image_free(&rgba_back); /* emptied: a second free is harmless */
    ldmae_image_free(&bgra_back);
    ldmae_image_free(NULL);

    /* Damaged, truncated and foreign data. */
    LdmaeImage img = {0};
    EXPECT(ldmae_codec_decompress(codec, from_rgb.data, from_rgb.len - 5, LDMAE_RGB8, NULL, NULL, &img),
           LDMAE_INVALID_DATA);
    uint8_t *flipped = malloc(from_rgb.len);
    memcpy(flipped, from_rgb.data, from_rgb.len);
    flipped[from_rgb.len / 2] ^= 0x10;
    EXPECT(ldmae_codec_decompress(codec, flipped, from_rgb.len, LDMAE_RGB8, NULL, NULL, &img), LDMAE_INVALID_DATA);
    free(flipped);
    EXPECT(ldmae_codec_decompress(codec, (const uint8_t *)"garbage", 7, LDMAE_RGB8, NULL, NULL, &img),
           LDMAE_INVALID_DATA);
    EXPECT(ldmae_codec_decompress(codec, NULL, 10, LDMAE_RGB8, NULL, NULL, &img), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_codec_decompress(codec, from_rgb.data, from_rgb.len, 3, NULL, NULL, &img), LDMAE_INVALID_ARGUMENT);
    CHECK(img.pixels == NULL, "no image after failures");

    /* Cancel from the progress callback. */
    calls = 0;
    EXPECT(ldmae_codec_compress(codec, rgb, W, H, W * 3, LDMAE_RGB8, 0, cancel_at_once, &calls, &none),
           LDMAE_CANCELLED);
    CHECK(calls == 1 && none.data == NULL, "cancelled after the first report (%d calls)", calls);
    EXPECT(ldmae_codec_decompress(codec, from_rgb.data, from_rgb.len, LDMAE_RGB8, cancel_at_once, &calls, &img),
           LDMAE_CANCELLED);

    /* Two codecs on two threads at once (one of them on its own pool of 1 thread) give the
     * bytes of one thread. */
    struct job jobs[2] = {{.threads = 0}, {.threads = 1}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, compress_on_thread, &jobs[i]);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].status == LDMAE_OK && same_buffer(&jobs[i].out, &from_rgb), "thread %d", i);
        ldmae_buffer_free(&jobs[i].out);
    }

    ldmae_buffer_free(&from_rgb);
    ldmae_buffer_free(&from_bgra);
    ldmae_buffer_free(NULL);
    ldmae_codec_free(codec);
    ldmae_codec_free(NULL);
}

static void test_vmae(const char *tiny, double tolerance, const char *out_dir) {
    LdmaeVmae *vmae = NULL;
    LdmaeOptions opts;
    ldmae_options_default(&opts);
    opts.device = 1;
    EXPECT(ldmae_vmae_open(join(tiny, "latents_stats.pt"), &opts, &vmae), LDMAE_INVALID_DATA);
    size_t len = 0;
    uint8_t *ckpt = read_file(join(tiny, "vmae.pth"), &len);
    CHECK(ckpt != NULL, "read vmae.pth");
    char cut_path[4096];
    snprintf(cut_path, sizeof cut_path, "%s", join(out_dir, "cut.pth"));
    if (ckpt && write_file(cut_path, ckpt, len / 2) == 0)
        EXPECT(ldmae_vmae_open(cut_path, &opts, &vmae), LDMAE_INVALID_DATA);
    free(ckpt);
    EXPECT(ldmae_vmae_open(join(tiny, "vmae.pth"), NULL, NULL), LDMAE_INVALID_ARGUMENT);

    if (ldmae_vmae_open(join(tiny, "vmae.pth"), &opts, &vmae) != LDMAE_OK) {
        CHECK(0, "open the tiny VMAE checkpoint");
        return;
    }
    uint32_t shape[3] = {0};
    ldmae_vmae_latent_shape(vmae, shape);
    CHECK(ldmae_vmae_image_size(vmae) == 32 && shape[0] == 4 && shape[1] == 4 && shape[2] == 4, "sizes");
    CHECK(ldmae_vmae_image_size(NULL) == 0, "NULL handle");

    uint32_t w, h, ch;
    uint8_t *image = png_read(join(tiny, "image.png"), &w, &h, &ch);
    size_t n = 0;
    float *expected = read_npy(join(tiny, "enc_mean.npy"), &n);
    float latent[64];
    CHECK(image && expected && n == 64, "fixtures");
    if (image && expected && n == 64) {
        CHECK(ldmae_vmae_encode(vmae, image, w, h, w * ch, ch == 4 ? LDMAE_RGBA8 : LDMAE_RGB8, latent, 64) == LDMAE_OK,
              "encode");
        double worst = 0;
        for (int i = 0; i < 64; i++) worst = fmax(worst, fabs(latent[i] - expected[i]));
        CHECK(worst <= tolerance, "posterior mean off the official one by %g (tolerance %g)", worst, tolerance);
        EXPECT(ldmae_vmae_encode(vmae, image, w, h, w * ch, LDMAE_RGB8, latent, 63), LDMAE_INVALID_ARGUMENT);
        EXPECT(ldmae_vmae_encode(vmae, image, w, h, w * ch, LDMAE_RGB8, NULL, 64), LDMAE_INVALID_ARGUMENT);
        EXPECT(ldmae_vmae_encode(vmae, image, w / 2, h, w * ch, LDMAE_RGB8, latent, 64), LDMAE_INVALID_ARGUMENT);
    }
    free(image);
    free(expected);

    float *z = read_npy(join(tiny, "dec_latent.npy"), &n);
    uint8_t *official = png_read(join(tiny, "dec_image.png"), &w, &h, &ch);
    LdmaeImage out = {0};
    CHECK(z && official && n == 64, "fixtures");
    if (z && official && n == 64) {
        CHECK(ldmae_vmae_decode(vmae, z, 64, LDMAE_RGB8, &out) == LDMAE_OK && out.width == w && out.height == h,
              "decode");
        /* The official truncation flips a level only where 127.5·x + 128 lies within float error of
         * an integer: at most one level, on at most 0.1 % of the values (as tests/common checks). */
        int flips = 0, worst = 0;
        for (size_t i = 0; out.pixels && i < (size_t)w * h * 3; i++) {
            int d = abs((int)out.pixels[i] - official[(i / 3) * ch + i % 3]);
            flips += d != 0;
            worst = d > worst ? d : worst;
        }
        CHECK(worst <= 1 && flips * 1000 <= (int)(w * h * 3), "decoded pixels: %d flips, worst %d", flips, worst);
        ldmae_image_free(&out);
        EXPECT(ldmae_vmae_decode(vmae, z, 63, LDMAE_RGB8, &out), LDMAE_INVALID_ARGUMENT);
        z[5] = NAN;
        EXPECT(ldmae_vmae_decode(vmae, z, 64, LDMAE_RGB8, &out), LDMAE_NUMERIC);
        EXPECT(ldmae_vmae_decode(vmae, z, 64, LDMAE_RGB8, NULL), LDMAE_INVALID_ARGUMENT);
    }
    free(z);
    free(official);
    ldmae_vmae_free(vmae);
    ldmae_vmae_free(NULL);
}

static void test_generator(const char *out_dir) {
    LdmaeGenerator *gen = NULL;
    LdmaeOptions opts;
    ldmae_options_default(&opts);
    opts.device = 1;
    EXPECT(ldmae_generator_open("assets/dit-fashion-2step.pack", NULL, &opts, &gen), LDMAE_INVALID_ARGUMENT);
    if (ldmae_generator_open(NULL, NULL, &opts, &gen) != LDMAE_OK) {
        CHECK(0, "open the embedded demo");
        return;
    }
    int32_t classes[3] = {0, 3, 7};
    LdmaeImage out[3];
    memset(out, 0, sizeof out);
    int calls = 0;
    CHECK(ldmae_generate(gen, classes, 3, 5, 0, 0.0f, count_calls, &calls, out) == LDMAE_OK, "generate");
    CHECK(calls == 2, "the 2-step model reports 2 steps (%d)", calls);
    uint8_t strip[32 * 3 * 32 * 3];
    for (int i = 0; i < 3; i++) {
        CHECK(out[i].width == 32 && out[i].height == 32 && out[i].stride == 96 && out[i].format == LDMAE_RGB8, "image %d",
              i);
        for (int y = 0; out[i].pixels && y < 32; y++) memcpy(strip + (y * 96 + i * 32) * 3, out[i].pixels + y * 96, 96);
        ldmae_image_free(&out[i]);
    }
    png_write(join(out_dir, "generated.png"), strip, 96, 32, 3);

    int32_t bad[2] = {1, -1}, beyond[1] = {99};
    EXPECT(ldmae_generate(gen, bad, 2, 5, 0, 0.0f, NULL, NULL, out), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_generate(gen, beyond, 1, 5, 0, 0.0f, NULL, NULL, out), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_generate(gen, classes, 0, 5, 0, 0.0f, NULL, NULL, out), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_generate(gen, NULL, 3, 5, 0, 0.0f, NULL, NULL, out), LDMAE_INVALID_ARGUMENT);
    EXPECT(ldmae_generate(NULL, classes, 3, 5, 0, 0.0f, NULL, NULL, out), LDMAE_INVALID_ARGUMENT);
    calls = 0;
    EXPECT(ldmae_generate(gen, classes, 3, 5, 4, 0.0f, cancel_at_once, &calls, out), LDMAE_CANCELLED);
    CHECK(calls == 1 && out[0].pixels == NULL, "cancelled after one step");
    ldmae_generator_free(gen);
    ldmae_generator_free(NULL);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--same-png")) {
        uint32_t w1, h1, c1, w2, h2, c2;
        uint8_t *a = png_read(argv[2], &w1, &h1, &c1), *b = png_read(argv[3], &w2, &h2, &c2);
        int same = a && b && w1 == w2 && h1 == h2 && c1 == c2 && !memcmp(a, b, (size_t)w1 * h1 * c1);
        if (!same) fprintf(stderr, "%s and %s differ\n", argv[2], argv[3]);
        free(a);
        free(b);
        return same ? 0 : 1;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s TINY_FIXTURES ENC_MEAN_TOLERANCE OUT_DIR | --same-png A B\n", argv[0]);
        return 2;
    }
    CHECK(strlen(ldmae_version()) > 0, "version");
    CHECK(ldmae_last_error() != NULL && ldmae_last_error()[0] == '\0', "no error yet");
    make_picture();
    test_codec(argv[3]);
    test_vmae(argv[1], atof(argv[2]), argv[3]);
    test_generator(argv[3]);
    fprintf(stderr, "%s: %d failure(s)\n", argv[0], failures);
    return failures ? 1 : 0;
}
