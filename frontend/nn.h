/* Neural-network layers over the builder. Each layer creates its parameters
 * under the builder's current scope plus the layer's name, so the names are
 * diffusers' state-dict keys: inside scope "down_blocks.0.resnets.0",
 * ldmc_nn_conv2d(b, "conv1", ...) makes "down_blocks.0.resnets.0.conv1.weight"
 * [out,in,k,k] and "....conv1.bias" [out]. The layer's nodes carry that scope
 * too. Parameters take the dtype of the layer's input. Errors are the
 * builder's (sticky, -1). */
#ifndef LDMC_FRONTEND_NN_H
#define LDMC_FRONTEND_NN_H

#include "frontend/frontend.h"

/* A parameter named "<scope>.<name>" ("<name>" at the top). */
ldmc_value ldmc_nn_param(ldmc_builder *b, const char *name, ldmc_dtype dt, int rank, const int64_t *dims);

/* x[..., in] -> [..., out]; weight [out,in], optional bias [out]. */
ldmc_value ldmc_nn_linear(ldmc_builder *b, const char *name, ldmc_value x, int64_t out, bool bias);

/* x[N,C,H,W] -> [N,out,H',W']; weight [out,C,k,k], optional bias [out]. */
ldmc_value ldmc_nn_conv2d(ldmc_builder *b, const char *name, ldmc_value x, int64_t out, int k, int stride, int pad,
                          bool bias);

/* Adds a per-channel bias[C] to x[N,C,...] (broadcast over dim 1). */
ldmc_value ldmc_nn_add_channel_bias(ldmc_builder *b, ldmc_value x, ldmc_value bias);

/* GroupNorm over x[N,C,...] with affine weight/bias [C]. */
ldmc_value ldmc_nn_group_norm(ldmc_builder *b, const char *name, ldmc_value x, int groups, double eps);

/* LayerNorm over the last dim with affine weight/bias [C]. */
ldmc_value ldmc_nn_layer_norm(ldmc_builder *b, const char *name, ldmc_value x, double eps);

/* diffusers FeedForward with GEGLU: "<name>.net.0.proj" linear dim -> 2*mult*dim
 * (first half value, second half gate), value * gelu(gate) (erf form),
 * "<name>.net.2" linear mult*dim -> dim. x[..., dim]. */
ldmc_value ldmc_nn_geglu_ff(ldmc_builder *b, const char *name, ldmc_value x, int mult);

/* diffusers Attention: x[B,N,C]; context[B,M,Cc] for cross-attention or -1 for
 * self-attention. to_q/to_k/to_v without bias (inner = heads*head_dim),
 * "to_out.0" with bias back to C; logits scaled by 1/sqrt(head_dim). */
ldmc_value ldmc_nn_attention(ldmc_builder *b, const char *name, ldmc_value x, ldmc_value context, int heads,
                             int64_t head_dim);

#endif
