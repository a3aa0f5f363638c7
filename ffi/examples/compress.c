/* Compresses a PNG to .ldz with the embedded photo VMAE, decompresses it again, and prints sizes.
 *
 *   cc -std=c99 -Iffi/include ffi/examples/compress.c target/release/libldmae.a -lz -lm -lpthread -ldl -o compress
 *   ./compress photo.png photo.ldz back.png [QUALITY]
 *
 * The photo is handed over as strided RGBA, the way a camera frame arrives. */
#include "ldmae.h"
#include "png.h"

static int32_t report(uint32_t done, uint32_t total, void *user) {
    fprintf(stderr, "\r%s %u/%u tiles", (const char *)user, done, total);
    return 0; /* non-zero would cancel */
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, ldmae_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s IN.png OUT.ldz BACK.png [QUALITY]\n", argv[0]);
        return 2;
    }
    uint32_t w, h, ch;
    uint8_t *rgb = png_read(argv[1], &w, &h, &ch);
    if (!rgb) {
        fprintf(stderr, "cannot read %s (8-bit RGB/RGBA PNG)\n", argv[1]);
        return 1;
    }
    /* RGBA rows padded to a multiple of 64 bytes. */
    uint32_t stride = (w * 4 + 63) / 64 * 64;
    uint8_t *rgba = calloc((size_t)stride * h, 1);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            memcpy(rgba + (size_t)y * stride + 4 * x, rgb + ((size_t)y * w + x) * ch, 3);
            rgba[(size_t)y * stride + 4 * x + 3] = 255;
        }
    free(rgb);

    LdmaeOptions opts;
    ldmae_options_default(&opts);
    opts.device = 1; /* the CPU */
    LdmaeCodec *codec = NULL;
    if (ldmae_codec_open(NULL, &opts, &codec) != LDMAE_OK) return fail("open");

    int quality = argc > 4 ? atoi(argv[4]) : 0;
    LdmaeBuffer ldz = {0};
    if (ldmae_codec_compress(codec, rgba, w, h, stride, LDMAE_RGBA8, quality, report, "compressing", &ldz) != LDMAE_OK)
        return fail("compress");
    fprintf(stderr, "\n%ux%u -> %zu bytes (%.3f bits per pixel)\n", w, h, ldz.len, ldz.len * 8.0 / ((double)w * h));
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(ldz.data, 1, ldz.len, f) != ldz.len) return fail("write .ldz");
    fclose(f);

    LdmaeImage back = {0};
    if (ldmae_codec_decompress(codec, ldz.data, ldz.len, LDMAE_RGB8, report, "decompressing", &back) != LDMAE_OK)
        return fail("decompress");
    fprintf(stderr, "\n");
    if (png_write(argv[3], back.pixels, back.width, back.height, 3)) return fail("write png");

    ldmae_image_free(&back);
    ldmae_buffer_free(&ldz);
    ldmae_codec_free(codec);
    free(rgba);
    return 0;
}
