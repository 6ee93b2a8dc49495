/* npembed's training kernels in plain C: one function per layer pass or optimizer update.
 *
 * Types: weights and gradients are float (float32), token ids int64_t (the batches arrive as
 * int64, see native.py), masks uint8_t (0: padding).  float64 models run the NumPy reference
 * path instead (kernels.py).  Shapes are written (B, L) for a batch of B reviews padded to L
 * tokens, (V, D) for an embedding table of V rows of width D.  The binding (binding.c) checks
 * every buffer's size against these shapes before it calls a kernel; a kernel checks nothing.
 *
 * Exactness: built with -ffp-contract=off (no fused multiply-add: Keras rounds a product and a
 * sum separately) and without -ffast-math, so every operation is IEEE, in float32, in the order
 * the NumPy reference writes it; sums over many terms are taken in double and rounded once. */
#ifndef NPEMBED_KERNELS_H
#define NPEMBED_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- ids (embedding.c) */
/* The position of the first id outside [0, num_rows) in ids (n,), or -1. */
int64_t first_bad_id(const int64_t *ids, int64_t n, int64_t num_rows);

/* ---------------------------------------------------------------- pooled embedding (embedding.c)
 * Embedding -> GlobalAveragePooling1D through each review's distinct rows ("pairs"). */
void review_row_counts(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L,
                       int32_t *counter, int64_t *pair_rows, int64_t *pair_counts, int64_t *offsets);
void pooled_embedding_forward(const float *table, const int64_t *pair_rows, const int64_t *pair_counts,
                              const int64_t *offsets, int64_t B, int64_t D, int64_t length,
                              float *out, int64_t *lengths, double *total);
int64_t distinct_rows(const int64_t *pair_rows, int64_t pairs, int32_t *slot, int64_t V, int scan_table,
                      int64_t *rows, uint8_t *single);
void pooled_embedding_backward(const int64_t *pair_rows, const int64_t *pair_counts, const int64_t *offsets,
                               const float *row_gradient, int64_t B, int64_t D, int32_t *slot,
                               const int64_t *rows, int64_t U, const uint8_t *single, double *acc,
                               uint8_t *started, float *sums, float *squares);

/* ---------------------------------------------------------------- masked pooling (masked_pool.c)
 * The same layers straight from the ids, position by position (the n-gram model). */
int64_t masked_row_total(const int64_t *row_ids, const uint8_t *row_mask, int64_t L, const float *table,
                         int64_t V, int64_t D, double *total, int for_write, int32_t *count,
                         const float *per_row);
int64_t first_empty_review(const uint8_t *mask, int64_t B, int64_t L);
void masked_pool_forward(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L,
                         const float *table, int64_t V, int64_t D, float *out, int64_t *lengths,
                         double *total);
void sgd_scatter(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L, float *table,
                 int64_t V, int64_t D, const float *step);

/* ---------------------------------------------------------------- Adam (adam.c) */
typedef struct { float alpha, c1, c2, eps; } AdamConstants;    /* c1 = 1 - beta_1, c2 = 1 - beta_2 */
void adam_dense(float *w, float *m, float *v, const float *g, int64_t n, AdamConstants k);
void adam_rows(float *w, float *m, float *v, const int64_t *rows, int64_t U, const float *g,
               const float *s, int64_t V, int64_t D, AdamConstants k);
void lazy_adam_rows(float *w, float *m, float *v, const int64_t *rows, int64_t U, const float *g,
                    const float *s, int64_t D, AdamConstants k);
void pooled_lazy_adam(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L, const float *grad,
                      float *w, float *m, float *v, int64_t V, int64_t D, int32_t *slot, int64_t *rows,
                      double *acc, float *scratch, AdamConstants k);

/* ---------------------------------------------------------------- one step per review (review_steps.c)
 * Every review must hold a masked-in position (the binding checks: first_empty_review). */
typedef struct { float *table, *kernel, *bias; } ReviewModel;         /* (V, D), (D,), (1,) */
typedef struct { float *table, *kernel, *bias; } AdagradState;        /* (V,), (D,), (1,) */
void review_steps_sgd(const int64_t *ids, const uint8_t *mask, const float *labels, int64_t B,
                      int64_t L, ReviewModel model, int64_t V, int64_t D, float rate,
                      float *logits, float *losses, double *h, float *scratch);
void review_steps_adagrad(const int64_t *ids, const uint8_t *mask, const float *labels, int64_t B,
                          int64_t L, ReviewModel model, AdagradState acc, int32_t *count, int64_t V,
                          int64_t D, float rate, float eps, float *logits, float *losses, double *h,
                          float *scratch);

/* ---------------------------------------------------------------- LSTM recurrence (lstm.c)
 * One direction over packed steps (recurrent_fast.py's layout): N pairs, J steps, U units,
 * G = 4U fused gate columns; offsets (J+1,) ascending from 0 to N, the counts never growing. */
void lstm_forward(float *gates, const float *recurrent, const int64_t *offsets, int64_t J, int64_t N,
                  int64_t U, float *states, float *cells, float *tanh_cells);
void lstm_backward(float *gates, const float *recurrent_t, const float *cells, const float *tanh_cells,
                   const float *d_states, const int64_t *offsets, int64_t J, int64_t N, int64_t U,
                   float *dh, float *dc);

/* ---------------------------------------------------------------- shared helpers */
#define PREFETCH_AHEAD 16                           /* rows asked for this many positions ahead */

/* Ask for the cache lines of [p, p + bytes) ahead of use: a big table's rows lie far apart. */
static inline void prefetch(const void *p, int64_t bytes, int for_write)
{
    for (int64_t offset = 0; offset < bytes; offset += 64) {
        if (for_write) __builtin_prefetch((const char *)p + offset, 1);
        else __builtin_prefetch((const char *)p + offset, 0);
    }
}

#endif
