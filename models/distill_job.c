/* Setting up the distillation of a trained latent diffusion model
 * (distill.h): the student, teacher and prompt-encoder graphs at the batch,
 * the loss graph, and the initial weights: the student starts as the
 * teacher with its guidance projection zero, so it first predicts exactly
 * what the teacher does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/distill.h"
#include "models/ldm_model.h"

void ldmc_lcd_job_free(ldmc_lcd_job *j) {
  if (!j) return;
  ldmc_graph_free(j->loss);
  ldmc_tensor_set_free(&j->init);
  ldmc_tensor_set_free(&j->extra);
  memset(j, 0, sizeof *j);
}

/* a copy of t named prefix + t->name */
static ldmc_status add_copy(ldmc_tensor_set *set, const char *prefix, const ldmc_tensor *t) {
  char name[512];
  snprintf(name, sizeof name, "%s%s", prefix, t->name);
  ldmc_tensor c;
  LDMC_TRY(ldmc_tensor_alloc(&c, name, t->dtype, &t->shape));
  memcpy(c.data, t->data, t->nbytes);
  ldmc_status st = ldmc_tensor_set_add(set, &c);
  if (st != LDMC_OK) ldmc_tensor_release(&c);
  return st;
}

static ldmc_status add_copies(ldmc_tensor_set *set, const char *prefix, const ldmc_tensor_set *src) {
  for (int32_t i = 0; i < src->n; i++) LDMC_TRY(add_copy(set, prefix, &src->items[i]));
  return LDMC_OK;
}

ldmc_status ldmc_lcd_job_build(const ldmc_ldm_model *m, const ldmc_lcd_config *lc, int guidance_dim, int64_t batch,
                               ldmc_lcd_job *j) {
  memset(j, 0, sizeof *j);
  if (m->unet.guidance_embed_dim > 0)
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the teacher is itself a distilled model (it has a guidance "
                      "input); distill an undistilled one");
  if (m->unet.cond_channels > 0) /* its step would need the image condition as data */
    return ldmc_error(LDMC_ERR_INVALID, "distillation: the teacher is a super-resolution model (cond_channels %d); "
                      "distilling one is not supported", m->unet.cond_channels);
  if (batch < 1) return ldmc_error(LDMC_ERR_INVALID, "distillation: batch %lld must be >= 1", (long long)batch);
  ldmc_unet_config tc = m->unet;
  tc.batch = 2 * batch;
  j->student = m->unet;
  j->student.batch = batch;
  j->student.guidance_embed_dim = guidance_dim;
  ldmc_clip_config xc = m->text;
  xc.batch = batch;
  ldmc_graph *sg = NULL, *tg = NULL, *xg = NULL;
  ldmc_status st = ldmc_unet_config_check(&j->student);
  if (st == LDMC_OK) st = ldmc_unet_build(&j->student, &sg);
  if (st == LDMC_OK) st = ldmc_unet_build(&tc, &tg);
  if (st == LDMC_OK) st = ldmc_clip_build(&xc, &xg);
  if (st == LDMC_OK) st = ldmc_tokenizer_encode("", xc.max_positions, j->empty);
  if (st == LDMC_OK) st = ldmc_lcd_loss_build(&m->diffusion, lc, sg, tg, xg, j->empty, m->latent_scale, &j->loss);
  ldmc_graph_free(sg), ldmc_graph_free(tg), ldmc_graph_free(xg);
  /* the student = the teacher; its guidance projection starts at zero */
  if (st == LDMC_OK) st = add_copies(&j->init, "", &m->unet_w);
  if (st == LDMC_OK) {
    const ldmc_shape sh = {.rank = 2, .dims = {j->student.channels, guidance_dim}};
    ldmc_tensor z;
    st = ldmc_tensor_alloc(&z, "time_embedding.cond_proj.weight", LDMC_F32, &sh);
    if (st == LDMC_OK) {
      memset(z.data, 0, z.nbytes);
      st = ldmc_tensor_set_add(&j->init, &z);
      if (st != LDMC_OK) ldmc_tensor_release(&z);
    }
  }
  if (st == LDMC_OK) st = add_copies(&j->init, "teacher.", &m->unet_w);
  if (st == LDMC_OK) st = add_copies(&j->init, "text.", &m->text_w);
  if (st == LDMC_OK) st = add_copies(&j->extra, "", &m->text_w);
  if (st == LDMC_OK) st = add_copies(&j->extra, "vae.", &m->vae_w);
  if (st != LDMC_OK) ldmc_lcd_job_free(j);
  return st;
}
