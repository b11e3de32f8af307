/* Model weights against a graph: checking a tensor set (a safetensors file)
 * against the graph's weight parameters, reproducible random init, and the
 * U-Net's run inputs. "Weights" are every parameter of the graph except the
 * named inputs. */
#ifndef LDMC_MODELS_WEIGHTS_H
#define LDMC_MODELS_WEIGHTS_H

#include "ir/ir.h"

/* Checks ws against g's weights: each present once with the graph's shape, no
 * tensor the graph does not declare. F32, F16 and BF16 on disk are accepted
 * and converted to the graph's dtype (f32) in place. On failure the message
 * lists each problem (missing, unexpected, mis-shaped or mis-typed tensor with
 * its expected and found type), up to a dozen, and the count. */
ldmc_status ldmc_weights_check(const ldmc_graph *g, const char *const *inputs, int n_inputs, ldmc_tensor_set *ws);

/* A fresh model (f32), PyTorch-default-like and reproducible:
 *   - weights of rank >= 2 (conv, linear): uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 *     fan_in = product of dims after the first;
 *   - "X.bias" whose "X.weight" has rank >= 2: the same bound as that weight;
 *   - other rank-1 "X.weight" (norms): ones; other "X.bias": zeros; anything else zeros.
 * Element i of tensor NAME draws u = mix(key + i * golden) with
 * key = mix(seed ^ mix(fnv1a64(NAME))), mix = splitmix64's finalizer and u's top
 * 53 bits as a fraction: independent of tensor order and thread count. */
ldmc_status ldmc_weights_init_random(const ldmc_graph *g, const char *const *inputs, int n_inputs, uint64_t seed,
                                     ldmc_tensor_set *out);
/* The uniform draw in [0,1) used above, for tests and tools. */
double ldmc_weights_uniform(uint64_t seed, const char *name, int64_t i);

/* path != NULL: loads that safetensors file and checks it (ldmc_weights_check,
 * message prefixed with the path); path == NULL: ldmc_weights_init_random(seed). */
ldmc_status ldmc_weights_load(const ldmc_graph *g, const char *const *inputs, int n_inputs, const char *path,
                              uint64_t seed, ldmc_tensor_set *out);

/* The U-Net's run inputs: exactly sample f32[B,C,H,W], timestep [B] (f32, or
 * i64 / i32 converted to f32) and encoder_hidden_states f32[B,T,D], with the
 * graph's shapes; anything else is refused with the expected type. */
ldmc_status ldmc_unet_inputs_check(const ldmc_graph *g, ldmc_tensor_set *inputs);

/* A set of non-owning views of weights' and inputs' tensors (names copied),
 * ready for ldmc_executable_run_named; both must outlive it. */
ldmc_status ldmc_weights_bind(const ldmc_tensor_set *weights, const ldmc_tensor_set *inputs, ldmc_tensor_set *out);

#endif
