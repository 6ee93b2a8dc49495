/* Embedding(mask) -> GlobalAveragePooling1D straight from the ids, without each review's
 * distinct rows, and plain SGD's step on it: the n-gram model's long reviews
 * (kernels.pooled_lookup with a mask / kernels.sgd_pooled_rows are the NumPy twins).
 * Masked-out positions (the padding) are skipped without touching the table.  The binding has
 * checked every id against the table (first_bad_id). */
#include "kernels.h"

/* One review: total (D,) = the sum in double, in position order, of table[row_ids[t]] over its
 * masked-in positions t < L; returns their number.  for_write: the caller will write the rows
 * it reads (prefetched for writing).  count (V,) or NULL: count[id] += 1 at each such position.
 * per_row (V,) or NULL: a per-row array the caller writes next, prefetched with the rows. */
int64_t masked_row_total(const int64_t *row_ids, const uint8_t *row_mask, int64_t L, const float *table,
                         int64_t V, int64_t D, double *total, int for_write, int32_t *count,
                         const float *per_row)
{
    (void)V;
    int64_t tokens = 0;
    for (int64_t j = 0; j < D; j++) total[j] = 0.0;
    for (int64_t t = 0; t < L; t++) {
        if (t + PREFETCH_AHEAD < L && row_mask[t + PREFETCH_AHEAD]) {
            const int64_t ahead = row_ids[t + PREFETCH_AHEAD];
            prefetch(table + ahead * D, D * sizeof(float), for_write);
            if (count) __builtin_prefetch(count + ahead, 1);
            if (per_row) __builtin_prefetch(per_row + ahead, 1);
        }
        if (!row_mask[t]) continue;
        const float *restrict values = table + row_ids[t] * D;
        for (int64_t j = 0; j < D; j++) total[j] += (double)values[j];
        if (count) count[row_ids[t]]++;          /* how often the review holds each row */
        tokens++;
    }
    return tokens;
}

/* The first review of mask (B, L) with no masked-in position, or -1: its average is
 * undefined, and the binding refuses such a batch before any kernel runs. */
int64_t first_empty_review(const uint8_t *mask, int64_t B, int64_t L)
{
    for (int64_t b = 0; b < B; b++) {
        uint8_t any = 0;
        for (int64_t t = 0; t < L; t++) any |= mask[b * L + t];
        if (!any) return b;
    }
    return -1;
}

/* forward: ids (B, L), mask (B, L), table (V, D) -> out (B, D) = the mean of the rows at the
 * masked-in positions (summed in double, rounded once), lengths (B,) = their number (0: a zero
 * row of out; the caller refuses it).  total: D doubles of scratch. */
void masked_pool_forward(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L,
                         const float *table, int64_t V, int64_t D, float *out, int64_t *lengths,
                         double *total)
{
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = masked_row_total(ids + b * L, mask + b * L, L, table, V, D, total, 0, NULL, NULL);
        lengths[b] = n;
        const double denominator = (double)(n > 0 ? n : 1);
        for (int64_t j = 0; j < D; j++) out[b * D + j] = (float)(total[j] / denominator);
    }
}

/* backward and plain SGD in one: step (B, D) = rate * dpooled / n[b] per review;
 * table[ids[b, t]] -= step[b] at every masked-in position, in position order (a row held k
 * times moves k times: the scatter-add of its slices, no distinct rows needed). */
void sgd_scatter(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L, float *table,
                 int64_t V, int64_t D, const float *step)
{
    (void)V;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row_ids = ids + b * L;
        const uint8_t *row_mask = mask + b * L;
        const float *restrict s = step + b * D;
        for (int64_t t = 0; t < L; t++) {
            if (t + PREFETCH_AHEAD < L && row_mask[t + PREFETCH_AHEAD])
                prefetch(table + row_ids[t + PREFETCH_AHEAD] * D, D * sizeof(float), 1);
            if (!row_mask[t]) continue;
            float *restrict w = table + row_ids[t] * D;
            for (int64_t j = 0; j < D; j++) w[j] -= s[j];
        }
    }
}
