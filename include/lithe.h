/*
 * lithe.h: the C ABI of lithe's int8 runtime.
 *
 * Link with liblithe_capi.a (built by `cargo build --release -p lithe-capi`) plus, on Linux,
 * -lpthread -ldl -lm; or with the shared library liblithe_capi.so.
 *
 * Handles are opaque. Each comes from a *_load / *_new function, which returns NULL on failure,
 * and is released by its *_free (NULL is ignored). The other functions return a LitheStatus;
 * on failure lithe_last_error() says why. No call lets a Rust panic escape: a bug in lithe is
 * reported as LITHE_INTERNAL.
 *
 * Threads: a model and a tokenizer may be shared by threads; a workspace serves one call at a
 * time. lithe_last_error() is per thread.
 *
 * Shapes are row-major. Sizes are size_t.
 */
#ifndef LITHE_H
#define LITHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The result of a call. */
typedef enum LitheStatus {
    LITHE_OK = 0,
    /* A required pointer was NULL. */
    LITHE_NULL_POINTER = 1,
    /* A size, length or shape is out of range (a batch larger than the workspace, an output
     * buffer too small, a token id outside the vocabulary, text that is not UTF-8...). */
    LITHE_INVALID_ARGUMENT = 2,
    /* A file could not be read, or is not a valid lithe model or tokenizer. */
    LITHE_FILE = 3,
    /* The call does not fit the model's kind (images to a text model, text to an image model). */
    LITHE_WRONG_MODEL_KIND = 4,
    /* A bug in lithe (a caught panic). */
    LITHE_INTERNAL = 5
} LitheStatus;

/* Model kinds, as lithe_model_kind() returns them. */
#define LITHE_KIND_VIT 0
#define LITHE_KIND_BERT 1

/* An int8 model (Vit or Bert) loaded from a file. */
typedef struct LitheModel LitheModel;
/* The buffers of a forward, sized once for a largest batch and sequence. */
typedef struct LitheWorkspace LitheWorkspace;
/* A WordPiece tokenizer. */
typedef struct LitheTokenizer LitheTokenizer;

/* The message of this thread's last failed call ("" after a success). Valid until the next
 * lithe call on this thread; do not free it. */
const char *lithe_last_error(void);

/* The library version, e.g. "0.1.0" (static). */
const char *lithe_version(void);

/* Loads an int8 model file (written by lithe's Int8Model::save, `lithe quantize` or
 * `lithe qat`). NULL on failure. */
LitheModel *lithe_model_load(const char *path);

/* Releases a model. Its workspaces must not be used afterwards. */
void lithe_model_free(LitheModel *model);

/* LITHE_KIND_VIT, LITHE_KIND_BERT, or -1 for a NULL model. */
int32_t lithe_model_kind(const LitheModel *model);

/* Logits per sample; 0 for a NULL model. */
size_t lithe_model_num_classes(const LitheModel *model);

/* Width of the hidden states and of an embedding; 0 for a NULL model. */
size_t lithe_model_hidden_size(const LitheModel *model);

/* Longest sequence (Bert: positions; Vit: tokens per image); 0 for a NULL model. */
size_t lithe_model_max_seq(const LitheModel *model);

/* A Vit's input shape {channels, height, width}, written to out_shape[0..3]. */
LitheStatus lithe_model_image_shape(const LitheModel *model, size_t *out_shape);

/* A workspace for forwards of `model` (and no other) of up to max_batch samples of up to
 * max_seq tokens (0: lithe_model_max_seq). All memory of a forward is allocated here:
 * lithe_classify_images and lithe_embed_tokens allocate nothing once one call has run. NULL on
 * failure, including a workspace over 64 GiB or one the allocator cannot provide. */
LitheWorkspace *lithe_workspace_new(const LitheModel *model, size_t max_batch, size_t max_seq);

/* Releases a workspace. */
void lithe_workspace_free(LitheWorkspace *ws);

/* Vit: logits [batch, num_classes] of `batch` images. pixels holds batch * C * H * W floats
 * ([batch, C, H, W], see lithe_model_image_shape); out_logits holds out_len >=
 * batch * num_classes floats. */
LitheStatus lithe_classify_images(const LitheModel *model, LitheWorkspace *ws,
                                  const float *pixels, size_t batch,
                                  float *out_logits, size_t out_len);

/* Bert: sentence embeddings [batch, hidden_size] of `batch` token sequences. ids is
 * [batch, seq]; lengths (NULL: no padding) gives the real tokens of each row (1..=seq), the
 * rest being padding. Each embedding is the mean of the last hidden states over real tokens,
 * L2-normalized. out holds out_len >= batch * hidden_size floats. */
LitheStatus lithe_embed_tokens(const LitheModel *model, LitheWorkspace *ws,
                               const uint32_t *ids, size_t batch, size_t seq,
                               const size_t *lengths, float *out, size_t out_len);

/* Loads a WordPiece tokenizer: a BERT vocab.txt (input lower-cased, as uncased BERTs) or a
 * tokenizer.json (a path ending in .json). NULL on failure. */
LitheTokenizer *lithe_tokenizer_load(const char *path);

/* Releases a tokenizer. */
void lithe_tokenizer_free(LitheTokenizer *tokenizer);

/* Bert: the sentence embedding (hidden_size floats) of one UTF-8 text, tokenized as
 * [CLS] ... [SEP] and truncated to the workspace's max_seq tokens, then as
 * lithe_embed_tokens. out holds out_len >= hidden_size floats. Tokenizing allocates (the
 * tokenizer builds its encoding on the heap); for a forward that allocates nothing, tokenize
 * once and call lithe_embed_tokens. */
LitheStatus lithe_embed_text(const LitheModel *model, LitheWorkspace *ws,
                             const LitheTokenizer *tokenizer, const char *text,
                             float *out, size_t out_len);

#ifdef __cplusplus
}
#endif

#endif /* LITHE_H */
