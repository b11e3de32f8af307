/* The pass manager: pipelines of passes and fixed-point groups, the verifier
 * between passes, IR dumps of matching passes, per-pass statistics. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "passes/pass_util.h"

#define DEFAULT_MAX_ITER 16

typedef struct step {
  char *name;
  const ldmc_pass **passes;
  int n;
  bool fixpoint;
} step;

struct ldmc_pipeline {
  char *name;
  step *steps;
  int n_steps, cap_steps;
  ldmc_pass_stat *stats;
  int n_stats;
};

ldmc_pipeline *ldmc_pipeline_new(const char *name) {
  ldmc_pipeline *p = calloc(1, sizeof *p);
  if (!p || !(p->name = strdup(name ? name : "pipeline"))) {
    free(p);
    ldmc_error(LDMC_ERR_NOMEM, "out of memory creating a pipeline");
    return NULL;
  }
  return p;
}

void ldmc_pipeline_free(ldmc_pipeline *p) {
  if (!p) return;
  for (int i = 0; i < p->n_steps; i++) {
    free(p->steps[i].name);
    free(p->steps[i].passes);
  }
  free(p->steps);
  free(p->stats);
  free(p->name);
  free(p);
}

static ldmc_status add_step(ldmc_pipeline *p, const char *name, int n, const ldmc_pass *const *passes, bool fix) {
  if (n < 1) return ldmc_error(LDMC_ERR_INVALID, "pipeline '%s': a step needs at least one pass", p->name);
  for (int i = 0; i < n; i++)
    if (!passes[i] || !passes[i]->run || !passes[i]->name)
      return ldmc_error(LDMC_ERR_INVALID, "pipeline '%s': pass %d of step '%s' is incomplete", p->name, i, name);
  if (p->n_steps == p->cap_steps) {
    int cap = p->cap_steps ? p->cap_steps * 2 : 8;
    step *s = realloc(p->steps, (size_t)cap * sizeof *s);
    if (!s) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
    p->steps = s;
    p->cap_steps = cap;
  }
  step st = {.n = n, .fixpoint = fix};
  st.name = strdup(name);
  st.passes = malloc((size_t)n * sizeof *st.passes);
  if (!st.name || !st.passes) {
    free(st.name);
    free(st.passes);
    return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  }
  memcpy(st.passes, passes, (size_t)n * sizeof *st.passes);
  p->steps[p->n_steps++] = st;
  return LDMC_OK;
}

ldmc_status ldmc_pipeline_add(ldmc_pipeline *p, const ldmc_pass *pass) {
  if (!pass) return ldmc_error(LDMC_ERR_INVALID, "pipeline '%s': NULL pass", p->name);
  return add_step(p, pass->name ? pass->name : "?", 1, &pass, false);
}

ldmc_status ldmc_pipeline_add_fixpoint(ldmc_pipeline *p, const char *name, int n, const ldmc_pass *const *passes) {
  return add_step(p, name ? name : "fixpoint", n, passes, true);
}

char *ldmc_pipeline_describe(const ldmc_pipeline *p) {
  size_t len = 1;
  for (int i = 0; i < p->n_steps; i++) {
    len += strlen(p->steps[i].name) + 4;
    for (int j = 0; j < p->steps[i].n; j++) len += strlen(p->steps[i].passes[j]->name) + 1;
  }
  char *s = malloc(len), *w = s;
  if (!s) return NULL;
  *w = 0;
  for (int i = 0; i < p->n_steps; i++) {
    const step *st = &p->steps[i];
    if (i) *w++ = ' ';
    if (!st->fixpoint) {
      w += sprintf(w, "%s", st->passes[0]->name);
      continue;
    }
    w += sprintf(w, "%s{", st->name);
    for (int j = 0; j < st->n; j++) w += sprintf(w, "%s%s", j ? "," : "", st->passes[j]->name);
    w += sprintf(w, "}");
  }
  return s;
}

int ldmc_pipeline_stats(const ldmc_pipeline *p, const ldmc_pass_stat **out) {
  *out = p->stats;
  return p->n_stats;
}

static ldmc_pass_stat *stat_for(ldmc_pipeline *p, const char *name) {
  for (int i = 0; i < p->n_stats; i++)
    if (strcmp(p->stats[i].pass, name) == 0) return &p->stats[i];
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct run_state {
  ldmc_pipeline *p;
  const ldmc_pass_ctx *ctx;
  bool verify, stats, dumping;
  regex_t re;
  const char *dir;
  int seq;
  FILE *log;
} run_state;

static bool dump_matches(run_state *rs, const char *name) {
  return rs->dumping && regexec(&rs->re, name, 0, NULL, 0) == 0;
}

static ldmc_status maybe_dump(run_state *rs, ldmc_graph *g, const char *name) {
  if (!dump_matches(rs, name)) return LDMC_OK;
  return ldmc_dump_graph(g, rs->ctx->plan, rs->dir, rs->seq++, name);
}

/* Runs one pass once; *changed gets its answer. */
static ldmc_status run_one(run_state *rs, ldmc_graph *g, const ldmc_pass *pass, bool in_group, bool *changed) {
  ldmc_status st = LDMC_OK;
  ldmc_pass_ctx ctx = *rs->ctx;
  ctx.status = &st;
  int32_t before = g->n_nodes;
  double t0 = now_s();
  *changed = pass->run(g, &ctx);
  double dt = now_s() - t0;
  if (st != LDMC_OK) {
    ldmc_error_prefix("pass %s: ", pass->name);
    return st;
  }
  if (*changed && !(pass->flags & LDMC_PASS_PLAN)) ldmc_plan_reset(ctx.plan); /* the plan named old node ids */
  ldmc_pass_stat *s = stat_for(rs->p, pass->name);
  if (s) {
    s->runs++;
    s->changed += *changed;
    s->seconds += dt;
    s->nodes_delta += g->n_nodes - before;
  }
  if (rs->stats)
    fprintf(rs->log, "pass %-18s %9.3f ms  nodes %7d -> %7d (%+d)%s\n", pass->name, dt * 1e3, (int)before,
            (int)g->n_nodes, (int)(g->n_nodes - before), *changed ? "  changed" : "");
  if (rs->verify && *changed) {
    ldmc_status v = ldmc_graph_verify(g);
    if (v != LDMC_OK) {
      ldmc_error_prefix("verifier after pass %s: ", pass->name);
      return v;
    }
  }
  /* in a fixed-point group only runs that changed something are dumped */
  if (*changed || !in_group) LDMC_TRY(maybe_dump(rs, g, pass->name));
  return LDMC_OK;
}

static ldmc_status run_steps(run_state *rs, ldmc_graph *g, int max_iter) {
  ldmc_pipeline *p = rs->p;
  for (int i = 0; i < p->n_steps; i++) {
    step *st = &p->steps[i];
    if (!st->fixpoint) {
      bool ch;
      LDMC_TRY(run_one(rs, g, st->passes[0], false, &ch));
      continue;
    }
    int iter = 0;
    bool any = true;
    while (any && iter < max_iter) {
      any = false;
      for (int j = 0; j < st->n; j++) {
        bool ch;
        LDMC_TRY(run_one(rs, g, st->passes[j], true, &ch));
        any |= ch;
      }
      iter++;
    }
    if (any && rs->stats)
      fprintf(rs->log, "group %s: stopped at the cap of %d iterations while still changing\n", st->name, max_iter);
  }
  return LDMC_OK;
}

ldmc_status ldmc_pipeline_run(ldmc_pipeline *p, ldmc_graph *g, const ldmc_pass_ctx *ctx, const ldmc_pipeline_opts *o) {
  ldmc_pipeline_opts def = {0};
  if (!o) o = &def;
  /* stats table: one row per distinct pass */
  free(p->stats);
  p->n_stats = 0;
  int total = 0;
  for (int i = 0; i < p->n_steps; i++) total += p->steps[i].n;
  p->stats = calloc((size_t)total + 1, sizeof *p->stats);
  if (!p->stats) return ldmc_error(LDMC_ERR_NOMEM, "out of memory");
  for (int i = 0; i < p->n_steps; i++)
    for (int j = 0; j < p->steps[i].n; j++)
      if (!stat_for(p, p->steps[i].passes[j]->name)) p->stats[p->n_stats++].pass = p->steps[i].passes[j]->name;

  run_state rs = {.p = p, .ctx = ctx, .stats = o->stats, .log = o->log ? o->log : stderr};
#ifndef NDEBUG
  rs.verify = true;
#else
  rs.verify = o->verify_each;
#endif
  const char *regex = o->dump_regex ? o->dump_regex : getenv("LDMC_DUMP_PASSES");
  rs.dir = o->dump_dir ? o->dump_dir : getenv("LDMC_DUMP_DIR");
  if (!rs.dir || !*rs.dir) rs.dir = ".";
  if (regex && *regex) {
    int rc = regcomp(&rs.re, regex, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char msg[128];
      regerror(rc, &rs.re, msg, sizeof msg);
      return ldmc_error(LDMC_ERR_INVALID, "--dump-passes '%s': %s", regex, msg);
    }
    rs.dumping = true;
  }
  ldmc_status s = LDMC_OK;
  if (rs.verify) {
    s = ldmc_graph_verify(g);
    if (s != LDMC_OK) ldmc_error_prefix("verifier before pipeline %s: ", p->name);
  }
  if (s == LDMC_OK) s = maybe_dump(&rs, g, "input");
  if (s == LDMC_OK) s = run_steps(&rs, g, o->max_iterations > 0 ? o->max_iterations : DEFAULT_MAX_ITER);
  if (rs.dumping) regfree(&rs.re);
  if (s == LDMC_OK && rs.stats) {
    fprintf(rs.log, "pipeline %s totals:\n", p->name);
    for (int i = 0; i < p->n_stats; i++)
      fprintf(rs.log, "  %-18s runs %3d changed %3d %9.3f ms  nodes %+lld\n", p->stats[i].pass, p->stats[i].runs,
              p->stats[i].changed, p->stats[i].seconds * 1e3, (long long)p->stats[i].nodes_delta);
  }
  return s;
}
