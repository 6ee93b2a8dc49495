/* tfds's text tokens and subword ids in C (tokenizer.c): plain C, no Python. */
#ifndef NPEMBED_TOKENIZER_H
#define NPEMBED_TOKENIZER_H

#include <stdint.h>

/* A growable array of fixed-size items (item bytes each); data is malloc'd. */
typedef struct { char *data; int64_t size, capacity, item; } Growing;
void growing_free(Growing *g);

int code_points_present(const uint8_t *text, int64_t n, uint8_t *present);
int tokenize_texts(const uint8_t *text, const int64_t *offsets, int64_t R, const uint8_t *word,
                   int64_t *token_offsets, Growing *index, Growing *prepared, Growing *prepared_chars);
int encode_tokens(const uint8_t *tokens, const int64_t *token_ends, int64_t T, const uint8_t *subwords,
                  const int64_t *subword_ends, int64_t S, int64_t max_chars, int64_t *id_offsets, Growing *ids);
int64_t gathered_length(const int32_t *index, int64_t M, const int64_t *id_offsets, int64_t T);
void gather_ids(const int32_t *index, const int64_t *id_offsets, const int32_t *token_ids,
                const int64_t *token_offsets, int64_t R, int32_t *ids, int64_t *offsets);

#endif
