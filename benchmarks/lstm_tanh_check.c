/* Every float32 input through csrc/lstm.c's tanh_in_place, against libm's double tanh: the
 * worst error in float32 ulps of the correctly rounded result (1 - 2^-24 at +-1), and whether
 * NaN, the signs and the zeros come through.  About 75 s on one core:
 *
 *     gcc -O3 -march=native -ffp-contract=off -fno-math-errno -Inpembed/csrc \
 *         benchmarks/lstm_tanh_check.c -lm -o /tmp/tanh_check && /tmp/tanh_check
 *
 * (native.py's flags; measured 2026-12-08 on the AMD EPYC: worst 0.5041 ulp at x = 0x1.2037a4p+3.) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lstm.c"

#define CHUNK (1u << 16)

/* |got - tanh(x)| in ulps of the float32 nearest tanh(x). */
static double ulps(float x, float got)
{
    const double exact = tanh((double)x);
    const float nearest = fabsf((float)exact);
    const double ulp = nearest == 1.0f ? 1.0 - (double)nextafterf(1.0f, 0.0f)
                                       : (double)nextafterf(nearest, INFINITY) - nearest;
    return fabs((double)got - exact) / ulp;
}

int main(void)
{
    static float values[CHUNK];
    double worst = 0.0;
    float worst_x = 0.0f;
    long wrong = 0;                                 /* NaN lost, or a zero with the wrong sign */
    for (unsigned long long base = 0; base < (1ull << 32); base += CHUNK) {
        for (unsigned k = 0; k < CHUNK; k++) { unsigned bits = (unsigned)(base + k); memcpy(&values[k], &bits, 4); }
        tanh_in_place(values, CHUNK);
        for (unsigned k = 0; k < CHUNK; k++) {
            unsigned bits = (unsigned)(base + k);
            float x;
            memcpy(&x, &bits, 4);
            if (isnan(x) || x == 0.0f) { wrong += isnan(x) ? !isnan(values[k]) : values[k] != x || signbit(values[k]) != signbit(x); continue; }
            const double e = ulps(x, values[k]);
            if (e > worst) { worst = e; worst_x = x; }
        }
    }
    printf("worst %.4f ulp at x = %a; NaN or zero-sign errors: %ld\n", worst, worst_x, wrong);
    return wrong != 0 || worst > 1.0;
}
