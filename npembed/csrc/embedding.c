/* Embedding -> GlobalAveragePooling1D, forward and backward, through each review's distinct
 * rows: the tutorial model's first two layers (kernels.pooled_lookup / pooled_row_sums are the
 * NumPy twins, layers.PooledEmbedding the definition).
 *
 * A review b's "pairs" p in offsets[b] .. offsets[b+1]: review b holds row pair_rows[p] at
 * pair_counts[p] masked-in positions, rows in order of first appearance.  A row seen only at
 * masked-out positions is listed with count 0 (TensorFlow's IndexedSlices list it too). */
#include <string.h>

#include "kernels.h"

int64_t first_bad_id(const int64_t *ids, int64_t n, int64_t num_rows)
{
    uint64_t bad = 0;                  /* one branch-free pass (a vector compare and an or) */
    for (int64_t i = 0; i < n; i++) bad |= (uint64_t)ids[i] >= (uint64_t)num_rows;
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if ((uint64_t)ids[i] >= (uint64_t)num_rows) return i;
    return -1;
}

/* ids (B, L), mask (B, L) or NULL -> pair_rows, pair_counts (at most B*L each), offsets (B+1,).
 * counter (V,) is all zero on entry and exit; while review b is counted, a row it holds has
 * 1 + its count there.  A run of one row (the padding) is counted in a register. */
void review_row_counts(const int64_t *ids, const uint8_t *mask, int64_t B, int64_t L,
                       int32_t *counter, int64_t *pair_rows, int64_t *pair_counts, int64_t *offsets)
{
    int64_t pairs = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row_ids = ids + b * L;
        const uint8_t *row_mask = mask ? mask + b * L : NULL;
        offsets[b] = pairs;
        int64_t run_row = row_ids[0], run = 0;
        for (int64_t t = 0; t <= L; t++) {
            if (t + 16 < L) __builtin_prefetch(&counter[row_ids[t + 16]], 1);
            if (t < L && row_ids[t] == run_row) {
                run += row_mask ? row_mask[t] != 0 : 1;
                continue;
            }
            int64_t is_new = counter[run_row] == 0;      /* branch-free: hard to predict */
            pair_rows[pairs] = run_row;
            pairs += is_new;
            counter[run_row] += run + is_new;
            if (t < L) {
                run_row = row_ids[t];
                run = row_mask ? row_mask[t] != 0 : 1;
            }
        }
        for (int64_t p = offsets[b]; p < pairs; p++) {
            pair_counts[p] = counter[pair_rows[p]] - 1;
            counter[pair_rows[p]] = 0;
        }
    }
    offsets[B] = pairs;
}

/* forward: out (B, D) = sum_p count_p * table[row_p] / n[b] over review b's pairs, n[b] its
 * token count (or `length` when positive: the unmasked average over the padded length),
 * summed in double (a count times a float is exact there) and rounded once; lengths (B,) = n.
 * total: D doubles of scratch. */
void pooled_embedding_forward(const float *table, const int64_t *pair_rows, const int64_t *pair_counts,
                              const int64_t *offsets, int64_t B, int64_t D, int64_t length,
                              float *out, int64_t *lengths, double *total)
{
    for (int64_t b = 0; b < B; b++) {
        int64_t tokens = 0;
        for (int64_t j = 0; j < D; j++) total[j] = 0.0;
        for (int64_t p = offsets[b]; p < offsets[b + 1]; p++) {
            if (p + PREFETCH_AHEAD < offsets[B])
                prefetch(table + pair_rows[p + PREFETCH_AHEAD] * D, D * sizeof(float), 0);
            const double count = (double)pair_counts[p];
            const float *restrict values = table + pair_rows[p] * D;
            tokens += pair_counts[p];
            for (int64_t j = 0; j < D; j++) total[j] += count * (double)values[j];
        }
        lengths[b] = tokens;
        const double n = length > 0 ? (double)length : (double)(tokens > 0 ? tokens : 1);
        for (int64_t j = 0; j < D; j++) out[b * D + j] = (float)(total[j] / n);
    }
}

/* Sort n row numbers in [0, V) ascending: least-significant-digit radix sort, 11 bits a pass
 * (two passes for a million rows), through tmp (n entries). */
static void sort_rows(int64_t *rows, int64_t *tmp, int64_t n, int64_t V)
{
    enum { BITS = 11, BUCKETS = 1 << BITS };
    int64_t starts[BUCKETS];
    for (int shift = 0; shift < 63 && (V - 1) >> shift; shift += BITS) {
        memset(starts, 0, sizeof starts);
        for (int64_t i = 0; i < n; i++) starts[(rows[i] >> shift) & (BUCKETS - 1)]++;
        for (int64_t d = 0, start = 0; d < BUCKETS; d++) {
            int64_t c = starts[d];
            starts[d] = start;
            start += c;
        }
        for (int64_t i = 0; i < n; i++) tmp[starts[(rows[i] >> shift) & (BUCKETS - 1)]++] = rows[i];
        memcpy(rows, tmp, n * sizeof(int64_t));
    }
}

/* backward, phase 1: the distinct rows of the pairs, ascending, into rows[:U] (rows: room for
 * 2 * pairs, the second half the sort's scratch); returns U.  scan_table: find them by a scan
 * of slot (V small) instead of a sort.  Leaves slot[rows[k]] = k, and single[k] = 1 when row k
 * is held by exactly one review.  slot (V,) is all -1 on entry; phase 2 restores it. */
int64_t distinct_rows(const int64_t *pair_rows, int64_t pairs, int32_t *slot, int64_t V, int scan_table,
                      int64_t *rows, uint8_t *single)
{
    int64_t distinct = 0;
    for (int64_t p = 0; p < pairs; p++) {          /* branch-free, as in review_row_counts */
        if (p + 16 < pairs) __builtin_prefetch(&slot[pair_rows[p + 16]], 1);
        rows[distinct] = pair_rows[p];
        distinct += slot[pair_rows[p]] == -1;
        slot[pair_rows[p]] -= 1;                   /* -1 - (number of pairs holding the row) */
    }
    if (scan_table) {
        int64_t k = 0;
        for (int64_t row = 0; row < V && k < distinct; row++) {
            rows[k] = row;
            k += slot[row] != -1;
        }
    } else {
        sort_rows(rows, rows + distinct, distinct, V);
    }
    for (int64_t k = 0; k < distinct; k++) {
        single[k] = slot[rows[k]] == -2;
        slot[rows[k]] = (int32_t)k;
    }
    return distinct;
}

/* backward, phase 2: row_gradient (B, D) is dpooled / n[b]; each position of review b sends it
 * to its row.  sums (U, D) = sum over pairs of count * g, squares (U, D) = sum of count * (g*g)
 * (the square rounded to float, as TensorFlow squares each slice), each summed in double and
 * rounded once: straight into the output for a row held by one review, through acc (U, 2D
 * doubles: [sum | squares]) for the others.  started: U bytes of scratch.  Restores slot. */
void pooled_embedding_backward(const int64_t *pair_rows, const int64_t *pair_counts, const int64_t *offsets,
                               const float *row_gradient, int64_t B, int64_t D, int32_t *slot,
                               const int64_t *rows, int64_t U, const uint8_t *single, double *acc,
                               uint8_t *started, float *sums, float *squares)
{
    memset(started, 0, U);
    for (int64_t b = 0; b < B; b++) {
        const float *restrict g = row_gradient + b * D;
        for (int64_t p = offsets[b]; p < offsets[b + 1]; p++) {
            const double count = (double)pair_counts[p];
            const int64_t k = slot[pair_rows[p]];
            if (single[k]) {
                float *restrict sum = sums + k * D, *restrict square = squares + k * D;
                for (int64_t j = 0; j < D; j++) {
                    sum[j] = (float)(count * (double)g[j]);
                    square[j] = (float)(count * (double)(g[j] * g[j]));
                }
                continue;
            }
            double *restrict row_acc = acc + k * 2 * D;
            for (int64_t j = 0; j < D; j++) {
                const double add_sum = count * (double)g[j];
                const double add_square = count * (double)(g[j] * g[j]);
                row_acc[j] = started[k] ? row_acc[j] + add_sum : add_sum;
                row_acc[D + j] = started[k] ? row_acc[D + j] + add_square : add_square;
            }
            started[k] = 1;
        }
    }
    for (int64_t k = 0; k < U; k++) {
        slot[rows[k]] = -1;
        if (single[k]) continue;
        for (int64_t j = 0; j < D; j++) {
            sums[k * D + j] = (float)acc[k * 2 * D + j];
            squares[k * D + j] = (float)acc[k * 2 * D + D + j];
        }
    }
}
