/* Vectorised transcendental functions of the CPU backend (vmath.c): the GELU (exact erf form
 * and tanh form) forward and backward, and exp of a float array (the softmax). Results are the
 * same on every CPU and within 1 ulp of libm's erff / expf / tanhf (see vmath.c). */
#ifndef MULTIENC_CPU_VMATH_H
#define MULTIENC_CPU_VMATH_H
#include "backend.h" /* me_vexp, me_verf */

/* out = GELU(inp): x/2 (1 + erf(x / sqrt 2)), or with tanh_form the tanh approximation */
void me_vgelu_forward(float *out, const float *inp, size_t n, int tanh_form);
/* dinp = GELU'(inp) * dout (dinp may be dout) */
void me_vgelu_backward(float *dinp, const float *inp, const float *dout, size_t n, int tanh_form);

#endif
