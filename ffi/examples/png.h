/* Minimal PNG reading and writing for the examples and tests (8-bit RGB or RGBA, not
 * interlaced), on zlib. Apps use their platform's image decoder instead. */
#ifndef LDMAE_EXAMPLE_PNG_H
#define LDMAE_EXAMPLE_PNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static inline uint32_t png_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void png_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static inline int png_paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

/* Reads `path` into a malloc'ed buffer of *height rows of *width pixels, *channels (3 or 4)
 * bytes each, tightly packed. Returns NULL on any failure. */
static inline uint8_t *png_read(const char *path, uint32_t *width, uint32_t *height, uint32_t *channels) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *file = (uint8_t *)malloc(size > 0 ? (size_t)size : 1), *idat = NULL, *raw = NULL, *out = NULL;
    size_t idat_len = 0, at = 8, row = 0;
    uint32_t w = 0, h = 0, ch = 0;
    uLongf raw_len = 0;
    if (!file || fread(file, 1, (size_t)size, f) != (size_t)size || size < 8 || memcmp(file, "\x89PNG", 4)) goto done;
    while (at + 12 <= (size_t)size) {
        uint32_t len = png_be32(file + at);
        const uint8_t *type = file + at + 4, *data = file + at + 8;
        if (len > (size_t)size - at - 12) goto done;
        if (!memcmp(type, "IHDR", 4)) {
            w = png_be32(data); h = png_be32(data + 4);
            ch = data[9] == 2 ? 3 : data[9] == 6 ? 4 : 0;
            if (data[8] != 8 || !ch || data[12] != 0 || !w || !h || w > 16384 || h > 16384) goto done;
        } else if (!memcmp(type, "IDAT", 4)) {
            uint8_t *grown = (uint8_t *)realloc(idat, idat_len + len);
            if (!grown) goto done;
            idat = grown;
            memcpy(idat + idat_len, data, len);
            idat_len += len;
        }
        at += 12 + len;
    }
    if (!ch || !idat) goto done;
    row = (size_t)w * ch;
    raw_len = (uLongf)(h * (row + 1));
    raw = (uint8_t *)malloc(raw_len);
    out = (uint8_t *)malloc(h * row);
    if (!raw || !out || uncompress(raw, &raw_len, idat, (uLong)idat_len) != Z_OK || raw_len != h * (row + 1)) {
        free(out);
        out = NULL;
        goto done;
    }
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *src = raw + y * (row + 1) + 1;
        uint8_t *dst = out + y * row, *up = y ? out + (y - 1) * row : NULL;
        for (size_t x = 0; x < row; x++) {
            int a = x >= ch ? dst[x - ch] : 0, b = up ? up[x] : 0, c = (up && x >= ch) ? up[x - ch] : 0;
            int pred[5] = {0, a, b, (a + b) / 2, png_paeth(a, b, c)};
            dst[x] = (uint8_t)(src[x] + pred[src[-1] < 5 ? src[-1] : 0]);
        }
    }
    *width = w; *height = h; *channels = ch;
done:
    fclose(f);
    free(file); free(idat); free(raw);
    return out;
}

static inline void png_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len) {
    uint8_t head[8];
    png_put32(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(crc32(0, head + 4, 4), data, len);
    uint8_t tail[4];
    png_put32(tail, (uint32_t)crc);
    fwrite(head, 1, 8, f); fwrite(data, 1, len, f); fwrite(tail, 1, 4, f);
}

/* Writes tightly packed 8-bit pixels (3 or 4 channels) as a PNG. Returns 0 on success. */
static inline int png_write(const char *path, const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels) {
    size_t row = (size_t)width * channels;
    uint8_t *raw = (uint8_t *)malloc(height * (row + 1));
    uLongf packed_len = compressBound((uLong)(height * (row + 1)));
    uint8_t *packed = (uint8_t *)malloc(packed_len);
    FILE *f = fopen(path, "wb");
    int status = -1;
    if (raw && packed && f) {
        for (uint32_t y = 0; y < height; y++) {
            raw[y * (row + 1)] = 0;
            memcpy(raw + y * (row + 1) + 1, pixels + y * row, row);
        }
        if (compress2(packed, &packed_len, raw, (uLong)(height * (row + 1)), 6) == Z_OK) {
            uint8_t ihdr[13] = {0};
            png_put32(ihdr, width); png_put32(ihdr + 4, height);
            ihdr[8] = 8; ihdr[9] = channels == 4 ? 6 : 2;
            fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
            png_chunk(f, "IHDR", ihdr, 13);
            png_chunk(f, "IDAT", packed, (uint32_t)packed_len);
            png_chunk(f, "IEND", ihdr, 0); /* zlib's crc32 treats a NULL buffer specially */
            status = 0;
        }
    }
    if (f) fclose(f);
    free(raw); free(packed);
    return status;
}

#endif
