/*
 * lithe_example: lithe's int8 runtime from C.
 *
 *   lithe_example classify MODEL IMAGES_IDX [N]
 *       Classifies the first N (default 8) images of an IDX image file (e.g. the shipped
 *       data/digits8x8/digits-images-idx3-ubyte) with an int8 Vit, in one batch. Pixels are
 *       divided by 16 when no pixel exceeds 16 (the 8x8 digits), else by 255, as lithe does.
 *       Prints one line per image: "image I class K logits L0 L1 ...".
 *
 *   lithe_example embed MODEL TOKENIZER TEXT
 *       Embeds TEXT with an int8 Bert (e.g. MiniLM) and a vocab.txt or tokenizer.json.
 *       Prints "embedding H V0 V1 ...".
 *
 * Build (from the repository root):
 *   cargo build --release -p lithe-capi
 *   cc -O2 -Iinclude examples/c/lithe_example.c target/release/liblithe_capi.a \
 *      -lpthread -ldl -lm -o lithe_example
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lithe.h"

static int fail(const char *what) {
    fprintf(stderr, "lithe_example: %s: %s\n", what, lithe_last_error());
    return 1;
}

/* Reads an IDX3 unsigned-byte image file: returns the pixels (count * rows * cols bytes). */
static unsigned char *read_idx3(const char *path, size_t *count, size_t *rows, size_t *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "lithe_example: cannot open %s\n", path);
        return NULL;
    }
    unsigned char head[16];
    if (fread(head, 1, 16, f) != 16 || head[0] != 0 || head[1] != 0 || head[2] != 8 ||
        head[3] != 3) {
        fprintf(stderr, "lithe_example: %s is not an IDX3 unsigned-byte file\n", path);
        fclose(f);
        return NULL;
    }
    size_t dims[3];
    for (int i = 0; i < 3; i++) {
        const unsigned char *d = head + 4 + 4 * i;
        dims[i] = ((size_t)d[0] << 24) | ((size_t)d[1] << 16) | ((size_t)d[2] << 8) | d[3];
    }
    size_t n = dims[0] * dims[1] * dims[2];
    unsigned char *pixels = malloc(n ? n : 1);
    if (!pixels || fread(pixels, 1, n, f) != n) {
        fprintf(stderr, "lithe_example: %s is truncated\n", path);
        free(pixels);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *count = dims[0];
    *rows = dims[1];
    *cols = dims[2];
    return pixels;
}

static int classify(const char *model_path, const char *images_path, size_t n) {
    LitheModel *model = lithe_model_load(model_path);
    if (!model) return fail("loading the model");
    if (lithe_model_kind(model) != LITHE_KIND_VIT) {
        fprintf(stderr, "lithe_example: %s is not a Vit\n", model_path);
        lithe_model_free(model);
        return 1;
    }
    size_t shape[3];
    if (lithe_model_image_shape(model, shape) != LITHE_OK) {
        lithe_model_free(model);
        return fail("image shape");
    }
    size_t count, rows, cols;
    unsigned char *raw = read_idx3(images_path, &count, &rows, &cols);
    if (!raw) {
        lithe_model_free(model);
        return 1;
    }
    int rc = 1;
    float *pixels = NULL, *logits = NULL;
    LitheWorkspace *ws = NULL;
    if (shape[0] != 1 || rows != shape[1] || cols != shape[2] || n == 0 || n > count) {
        fprintf(stderr, "lithe_example: want %zu images of 1x%zux%zu, the file has %zu of %zux%zu\n",
                n, shape[1], shape[2], count, rows, cols);
        goto done;
    }
    size_t per = rows * cols, classes = lithe_model_num_classes(model);
    unsigned max = 0;
    for (size_t i = 0; i < count * per; i++) max = raw[i] > max ? raw[i] : max;
    float scale = max <= 16 ? 16.0f : 255.0f;
    pixels = malloc(n * per * sizeof(float));
    logits = malloc(n * classes * sizeof(float));
    if (!pixels || !logits) goto done;
    for (size_t i = 0; i < n * per; i++) pixels[i] = (float)raw[i] / scale;
    ws = lithe_workspace_new(model, n, 0);
    if (!ws) {
        rc = fail("workspace");
        goto done;
    }
    if (lithe_classify_images(model, ws, pixels, n, logits, n * classes) != LITHE_OK) {
        rc = fail("classify");
        goto done;
    }
    for (size_t b = 0; b < n; b++) {
        const float *l = logits + b * classes;
        size_t best = 0;
        for (size_t c = 1; c < classes; c++) best = l[c] > l[best] ? c : best;
        printf("image %zu class %zu logits", b, best);
        for (size_t c = 0; c < classes; c++) printf(" %.9g", l[c]);
        printf("\n");
    }
    rc = 0;
done:
    lithe_workspace_free(ws);
    lithe_model_free(model);
    free(raw);
    free(pixels);
    free(logits);
    return rc;
}

static int embed(const char *model_path, const char *tokenizer_path, const char *text) {
    LitheModel *model = lithe_model_load(model_path);
    if (!model) return fail("loading the model");
    LitheTokenizer *tok = lithe_tokenizer_load(tokenizer_path);
    LitheWorkspace *ws = lithe_workspace_new(model, 1, 0);
    size_t h = lithe_model_hidden_size(model);
    float *out = malloc((h ? h : 1) * sizeof(float));
    int rc = 1;
    if (!tok) {
        rc = fail("loading the tokenizer");
    } else if (!ws) {
        rc = fail("workspace");
    } else if (out && lithe_embed_text(model, ws, tok, text, out, h) != LITHE_OK) {
        rc = fail("embed");
    } else if (out) {
        printf("embedding %zu", h);
        for (size_t i = 0; i < h; i++) printf(" %.9g", out[i]);
        printf("\n");
        rc = 0;
    }
    free(out);
    lithe_workspace_free(ws);
    lithe_tokenizer_free(tok);
    lithe_model_free(model);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "classify") == 0) {
        size_t n = argc >= 5 ? (size_t)strtoul(argv[4], NULL, 10) : 8;
        return classify(argv[2], argv[3], n);
    }
    if (argc == 5 && strcmp(argv[1], "embed") == 0) {
        return embed(argv[2], argv[3], argv[4]);
    }
    fprintf(stderr,
            "usage: %s classify MODEL IMAGES_IDX [N]\n"
            "       %s embed MODEL TOKENIZER TEXT\n"
            "lithe %s\n",
            argv[0], argv[0], lithe_version());
    return 2;
}
