/* Keras's Adam, element by element, as optimizers.adam_update writes it (kernels.adam_update*
 * are the NumPy twins, equal bit for bit):
 *     m += (g - m) * c1;   v += (S - v) * c2;   w -= m * alpha / (sqrt(v) + eps)
 * with c1 = 1 - beta_1, c2 = 1 - beta_2, alpha the bias-corrected rate, S = g * g (dense) or
 * the row-summed squares of a sparse gradient (Keras 2's IndexedSlices Adam).  Every
 * operation is one IEEE float32 operation in this order (-ffp-contract=off). */
#include "kernels.h"

#include <math.h>

/* n entries: w, m, v (n,) in place; g (n,); s (n,) or NULL for S = g * g. */
static inline void adam_span(float *restrict w, float *restrict m, float *restrict v,
                             const float *restrict g, const float *restrict s, int64_t n, AdamConstants k)
{
    for (int64_t i = 0; i < n; i++) {
        const float new_m = m[i] + (g[i] - m[i]) * k.c1;
        const float new_v = v[i] + ((s ? s[i] : g[i] * g[i]) - v[i]) * k.c2;
        m[i] = new_m;
        v[i] = new_v;
        w[i] -= new_m * k.alpha / (sqrtf(new_v) + k.eps);
    }
}

/* The same with g = S = 0: Keras computes m + (0 - m) * c1; m - m * c1 is the same number
 * (negation commutes with IEEE rounding), and likewise for v. */
static inline void adam_decay_span(float *restrict w, float *restrict m, float *restrict v, int64_t n,
                                   AdamConstants k)
{
    for (int64_t i = 0; i < n; i++) {
        const float new_m = m[i] - m[i] * k.c1;
        const float new_v = v[i] - v[i] * k.c2;
        m[i] = new_m;
        v[i] = new_v;
        w[i] -= new_m * k.alpha / (sqrtf(new_v) + k.eps);
    }
}

/* A dense weight: w, m, v, g (n,), S = g * g. */
void adam_dense(float *w, float *m, float *v, const float *g, int64_t n, AdamConstants k)
{
    adam_span(w, m, v, g, NULL, n, k);
}

/* A (V, D) table whose gradient is zero outside rows (U,) (ascending, distinct): g, s (U, D)
 * the rows' gradient and squares.  Every row moves (Keras's dense Adam), in one pass. */
void adam_rows(float *w, float *m, float *v, const int64_t *rows, int64_t U, const float *g,
               const float *s, int64_t V, int64_t D, AdamConstants k)
{
    int64_t done = 0;                          /* rows before this one are updated */
    for (int64_t u = 0; u < U; u++) {
        const int64_t r = rows[u];
        adam_decay_span(w + done * D, m + done * D, v + done * D, (r - done) * D, k);
        adam_span(w + r * D, m + r * D, v + r * D, g + u * D, s + u * D, D, k);
        done = r + 1;
    }
    adam_decay_span(w + done * D, m + done * D, v + done * D, (V - done) * D, k);
}

/* Prefetch one row of w, m and v, all three about to be written. */
static inline void prefetch_adam_row(const float *w, const float *m, const float *v, int64_t r, int64_t D)
{
    prefetch(w + r * D, D * sizeof(float), 1);
    prefetch(m + r * D, D * sizeof(float), 1);
    prefetch(v + r * D, D * sizeof(float), 1);
}

/* Lazy Adam: the same update on rows (U,) only (distinct, any order); the rest stay. */
void lazy_adam_rows(float *w, float *m, float *v, const int64_t *rows, int64_t U, const float *g,
                    const float *s, int64_t D, AdamConstants k)
{
    for (int64_t u = 0; u < U; u++) {
        if (u + PREFETCH_AHEAD < U) prefetch_adam_row(w, m, v, rows[u + PREFETCH_AHEAD], D);
        const int64_t r = rows[u];
        adam_span(w + r * D, m + r * D, v + r * D, g + u * D, s + u * D, D, k);
    }
}

/* Pass 1 of pooled_lazy_adam: each row met at a position of ids (B, L) gets a slot in order of
 * first appearance (rows[slot] = row, slot[row] = its slot) and acc[slot] (D doubles) the sum
 * of grad[b] over the masked-in positions holding it.  A row seen only at masked-out positions
 * (the padding row) is listed with a zero sum, as TensorFlow's IndexedSlices list it.
 * Returns how many rows were met. */
static int64_t sum_rows_from_ids(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L,
                                 const float *grad, int64_t D, int32_t *slot, int64_t *rows, double *acc)
{
    int64_t used = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row_ids = ids + b * L;
        const float *restrict g = grad + b * D;
        for (int64_t t = 0; t < L; t++) {
            if (t + PREFETCH_AHEAD < L) __builtin_prefetch(slot + row_ids[t + PREFETCH_AHEAD], 1);
            const int64_t id = row_ids[t];
            int32_t k = slot[id];
            if (k < 0) {
                k = (int32_t)used++;
                slot[id] = k;
                rows[k] = id;
                for (int64_t j = 0; j < D; j++) acc[k * D + j] = 0.0;
            }
            if (!mask[b * L + t]) continue;
            double *restrict sum = acc + (int64_t)k * D;
            for (int64_t j = 0; j < D; j++) sum[j] += (double)g[j];
        }
    }
    return used;
}

/* Lazy Adam on a pooled embedding's gradient straight from the ids (the n-gram model): grad
 * (B, D) is dpooled / n[b]; row r's gradient is the sum of grad[b] over the masked-in positions
 * holding r, summed in double and rounded once (g), S = g * g.  No per-review distinct rows, no
 * sort: rows are independent, their order does not matter.  slot (V,) all -1 on entry and
 * exit; rows (B*L,), acc (B*L, D) doubles, scratch (2D,) floats. */
void pooled_lazy_adam(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L, const float *grad,
                      float *w, float *m, float *v, int64_t V, int64_t D, int32_t *slot, int64_t *rows,
                      double *acc, float *scratch, AdamConstants k)
{
    (void)V;
    const int64_t used = sum_rows_from_ids(ids, mask, B, L, grad, D, slot, rows, acc);
    float *g = scratch, *s = scratch + D;
    for (int64_t u = 0; u < used; u++) {
        if (u + PREFETCH_AHEAD < used) prefetch_adam_row(w, m, v, rows[u + PREFETCH_AHEAD], D);
        const int64_t r = rows[u];
        slot[r] = -1;
        for (int64_t j = 0; j < D; j++) {
            g[j] = (float)acc[u * D + j];
            s[j] = g[j] * g[j];
        }
        adam_span(w + r * D, m + r * D, v + r * D, g, s, D, k);
    }
}
