/* The machine side of profiling: the FMA and triad microbenchmarks compute
 * exactly what they should (so the work was done), the calibration cache
 * round-trips and refuses malformed files without crashing, the peak is
 * interpolated as hand-computed, and the roofline (through runtime/plot.h)
 * escapes its title, names the roofs' figures in its legend, draws the
 * plottable points and the tags, parses as XML (python3's xml.etree, an
 * independent parser) and is a PNG by the extension. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/profiler.h"
#include "test_util.h"

static char g_dir[64];

static void path_in(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

static void test_benchmarks(void) {
  bool ok = false;
  const char *isa = NULL;
  double g1 = ldmc_bench_fma(1, 1 << 12, &ok, &isa);
  CHECK_MSG(ok && g1 > 0, "fma: %g GFLOP/s, ok %d", g1, ok);
  CHECK(isa && (strcmp(isa, "avx512") == 0 || strcmp(isa, "avx2") == 0 || strcmp(isa, "scalar") == 0));
  ok = false;
  double g2 = ldmc_bench_fma(2, (1 << 24) - 16, &ok, NULL); /* the largest exact count */
  CHECK_MSG(ok && g2 > 0, "fma 2 threads, 2^24 rounds: ok %d", ok);
  ok = false;
  double bw = ldmc_bench_triad(2, 100003, &ok); /* odd length: the tail is checked too */
  CHECK_MSG(ok && bw > 0, "triad: %g GB/s, ok %d", bw, ok);
  char cpu[128];
  ldmc_machine_cpu_name(cpu, sizeof cpu);
  CHECK(cpu[0] != 0 && strchr(cpu, '\n') == NULL);
  CHECK(ldmc_machine_nproc() >= 1);
}

static void test_interpolation(void) {
  ldmc_machine m = {.n = 3, .threads = {1, 2, 4}, .gflops = {10, 15, 30}, .gbs = {5, 8, 8}};
  CHECK_NEAR(ldmc_machine_peak(&m, 1), 10, 1e-12);
  CHECK_NEAR(ldmc_machine_peak(&m, 3), 22.5, 1e-12); /* halfway between 15 and 30 */
  CHECK_NEAR(ldmc_machine_peak(&m, 64), 30, 1e-12);  /* clamped */
  CHECK_NEAR(ldmc_machine_bandwidth(&m, 2), 8, 1e-12);
  /* a busy machine measured less at 2 threads than at 1: 2 threads can do what 1 did */
  ldmc_machine busy = {.n = 2, .threads = {1, 2}, .gflops = {80, 60}, .gbs = {12, 9}};
  CHECK_NEAR(ldmc_machine_peak(&busy, 2), 80, 1e-12);
  CHECK_NEAR(ldmc_machine_bandwidth(&busy, 2), 12, 1e-12);
  ldmc_machine none = {0};
  CHECK(ldmc_machine_peak(&none, 4) == 0);
}

static void test_cache(void) {
  char path[256], cpu[128];
  path_in(path, sizeof path, "a/b/machine.json"); /* folders created on save */
  ldmc_machine_cpu_name(cpu, sizeof cpu);
  ldmc_machine m = {.nproc = 3, .n = 2, .threads = {1, 3}, .gflops = {12.5, 30.25}, .gbs = {7, 9.5}};
  snprintf(m.cpu, sizeof m.cpu, "%s", cpu);
  snprintf(m.isa, sizeof m.isa, "avx2");
  snprintf(m.measured, sizeof m.measured, "2025-01-02T03:04:05Z");
  ldmc_machine back;
  bool found = true;
  CHECK(ldmc_machine_load(path, &back, &found) == LDMC_OK && !found); /* no file: not found, no error */
  CHECK_MSG(ldmc_machine_save(path, &m) == LDMC_OK, "%s", ldmc_last_error());
  CHECK(ldmc_machine_load(path, &back, &found) == LDMC_OK && found);
  CHECK(back.n == 2 && back.nproc == 3 && back.threads[1] == 3 && back.gflops[1] == 30.25 && back.gbs[0] == 7);
  CHECK(strcmp(back.isa, "avx2") == 0 && strcmp(back.measured, m.measured) == 0 && strcmp(back.cpu, cpu) == 0);
  /* another CPU's entry is kept when this one is saved again */
  char *text = read_all(path);
  json_t *root = text ? json_loads(text, 0, NULL) : NULL;
  free(text);
  json_object_set_new(json_object_get(root, "machines"), "Other CPU 9000",
                      json_pack("{s:s,s:i,s:[i],s:[f],s:[f]}", "isa", "scalar", "nproc", 1, "threads", 1, "fma_gflops",
                                1.0, "triad_gbs", 1.0));
  CHECK(root && json_dump_file(root, path, 0) == 0);
  json_decref(root);
  m.gflops[0] = 13;
  CHECK(ldmc_machine_save(path, &m) == LDMC_OK);
  text = read_all(path);
  CHECK(text && strstr(text, "Other CPU 9000") != NULL);
  free(text);
  CHECK(ldmc_machine_load(path, &back, &found) == LDMC_OK && found && back.gflops[0] == 13);
  /* malformed files: an error naming the file, never a crash */
  const char *bad[] = {
      "not json at all",
      "{\"machines\": 3}",
      "[1, 2, 3]",
      "{\"machines\": {\"%s\": {\"nproc\": 2, \"threads\": [1, 2], \"fma_gflops\": [1], \"triad_gbs\": [1, 2]}}}",
      "{\"machines\": {\"%s\": {\"nproc\": 2, \"threads\": [2, 1], \"fma_gflops\": [1, 2], \"triad_gbs\": [1, 2]}}}",
      "{\"machines\": {\"%s\": {\"nproc\": 2, \"threads\": [1], \"fma_gflops\": [\"x\"], \"triad_gbs\": [1]}}}",
      "{\"machines\": {\"%s\": {\"nproc\": 2, \"threads\": [1], \"fma_gflops\": [-5], \"triad_gbs\": [1]}}}",
      "{\"machines\": {\"%s\": {\"threads\": [1], \"fma_gflops\": [1], \"triad_gbs\": [1]}}}",
      "{\"machines\": {\"%s\": 7}}",
  };
  char bpath[256];
  path_in(bpath, sizeof bpath, "bad.json");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char doc[1024];
    snprintf(doc, sizeof doc, bad[i], cpu);
    write_file(bpath, doc);
    ldmc_status st = ldmc_machine_load(bpath, &back, &found);
    CHECK_MSG(st == LDMC_ERR_FORMAT && !found && strstr(ldmc_last_error(), "bad.json"), "case %zu: %s", i,
              ldmc_last_error());
  }
  /* a corrupt cache is replaced by the next save */
  write_file(bpath, "garbage");
  CHECK(ldmc_machine_save(bpath, &m) == LDMC_OK && ldmc_machine_load(bpath, &back, &found) == LDMC_OK && found);
  unlink(bpath);
  unlink(path);
  path_in(path, sizeof path, "a/b");
  rmdir(path);
  path_in(path, sizeof path, "a");
  rmdir(path);
  /* the cache path follows XDG_CACHE_HOME, else HOME */
  char cp[512];
  setenv("XDG_CACHE_HOME", "/x/cache", 1);
  CHECK(ldmc_machine_cache_path(cp, sizeof cp) == LDMC_OK && strcmp(cp, "/x/cache/ldmc/machine.json") == 0);
  unsetenv("XDG_CACHE_HOME");
  setenv("HOME", "/home/u", 1);
  CHECK(ldmc_machine_cache_path(cp, sizeof cp) == LDMC_OK && strcmp(cp, "/home/u/.cache/ldmc/machine.json") == 0);
}

/* <path> elements whose style has all of the given parts. */
static int paths_with(const char *svg, const char *part1, const char *part2) {
  int n = 0;
  for (const char *p = svg ? strstr(svg, "<path") : NULL; p; p = strstr(p + 1, "<path")) {
    const char *end = strchr(p, '>');
    if (!end) break;
    size_t len = (size_t)(end - p);
    char *tag = strndup(p, len);
    n += tag && strstr(tag, part1) && (!part2 || strstr(tag, part2));
    free(tag);
  }
  return n;
}

/* The roofline goes through runtime/plot.h: cairo draws text as glyph
 * outlines, so the words are checked in the <title>/<desc> plot.c writes
 * (the legend names the roofs' figures and counts the points), the circles
 * and labels by their paths' styles. */
static void test_roofline(void) {
  char path[256], png[256];
  path_in(path, sizeof path, "roof.svg");
  path_in(png, sizeof png, "roof.png");
  ldmc_roofline_point pts[] = {
      {"gemm %1 <a&b> \"q\" 'x'", "gemm <1>", 20, 50, 0.6},
      {"ew %2", NULL, 0.1, 1.5, 0.3},
      {"copy %3 (no FLOPs)", "copy", 0, 0, 0.1},
      {"nan %4", "nan", NAN, 3, 0.1},
  };
  CHECK_MSG(ldmc_roofline_write(path, "roof <test> & more", 100, 10, pts, 4) == LDMC_OK, "%s", ldmc_last_error());
  char *svg = read_all(path);
  CHECK(svg && strstr(svg, "<test>") == NULL && strstr(svg, "<title>roof &lt;test&gt; &amp; more</title>") != NULL);
  /* ridge = 100 / 10 = 10 FLOP/B; two of the four points can sit on log axes */
  CHECK_MSG(svg && strstr(svg, "<desc>legend: roofs: memory 10.0 GB/s, FMA peak 100.0 GFLOP/s (ridge 10.00 FLOP/B); "
                               "2 points, area = share of time; 2 without FLOPs or time not drawn</desc>"),
            "%.300s", svg ? strstr(svg, "<desc>") : "(no file)");
  /* the circles: filled in tab10 blue at 45%, the two points and the legend's swatch */
  int circles = paths_with(svg, "fill:rgb(12.156863%,46.666667%,70.588235%);fill-opacity:0.45", NULL);
  CHECK_MSG(circles == 3, "%d translucent blue circles, want 2 + the swatch", circles);
  /* the roofs: one line in tab10 red, 2.5 wide, and its swatch */
  CHECK(paths_with(svg, "stroke-width:2.5;", "stroke:rgb(83.921569%,15.294118%,15.686275%)") == 2);
  /* one tag drawn ("ew %2" has none), over a white halo */
  CHECK_MSG(paths_with(svg, "stroke-width:3;", "stroke:rgb(100%,100%,100%)") == 1, "%d haloed labels",
            paths_with(svg, "stroke-width:3;", "stroke:rgb(100%,100%,100%)"));
  CHECK(svg && strstr(svg, "width=\"960pt\" height=\"640pt\"") != NULL);
  free(svg);
  if (access("/usr/bin/python3", X_OK) == 0) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' %s",
             path);
    CHECK_MSG(system(cmd) == 0, "%s is not well-formed XML", path);
  }
  /* no calibration: no roofs, still a plot, and the title says so */
  CHECK(ldmc_roofline_write(path, "t", 0, 0, pts, 2) == LDMC_OK);
  svg = read_all(path);
  CHECK(svg && strstr(svg, "<title>t (no machine calibration: roofs not drawn)</title>") && !strstr(svg, "FMA peak"));
  CHECK(svg && strstr(svg, "<desc>legend: 2 points, area = share of time</desc>") != NULL);
  CHECK(paths_with(svg, "stroke-width:2.5;", NULL) == 0);
  free(svg);
  /* nothing plottable and no roofs: axes and a legend saying why the plot is empty */
  CHECK_MSG(ldmc_roofline_write(path, "", 0, 0, pts + 2, 2) == LDMC_OK, "%s", ldmc_last_error());
  svg = read_all(path);
  CHECK(svg && strstr(svg, "<desc>legend: 0 points, area = share of time; 2 without FLOPs or time not drawn</desc>"));
  CHECK(paths_with(svg, "fill-opacity:0.45", NULL) == 1); /* only the swatch */
  free(svg);
  CHECK(ldmc_roofline_write(path, "none", 50, 5, NULL, 0) == LDMC_OK);
  /* text from data with a control byte and invalid UTF-8: replaced, not refused */
  ldmc_roofline_point odd = {"odd", "tab\there \xff", 1, 1, 0.5};
  CHECK_MSG(ldmc_roofline_write(path, "graph\nname", 10, 1, &odd, 1) == LDMC_OK, "%s", ldmc_last_error());
  svg = read_all(path);
  CHECK(svg && strstr(svg, "<title>graph?name</title>") != NULL);
  free(svg);
  /* PNG by the extension: the signature and a 960 x 640 IHDR */
  CHECK_MSG(ldmc_roofline_write(png, "png", 100, 10, pts, 4) == LDMC_OK, "%s", ldmc_last_error());
  unsigned char *b = (unsigned char *)read_all(png);
  CHECK(b && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(b + 12, "IHDR", 4) == 0);
  CHECK(b && b[16] == 0 && b[17] == 0 && b[18] == 960 / 256 && b[19] == 960 % 256 && b[22] == 640 / 256 &&
        b[23] == 640 % 256);
  free(b);
  /* refusals: an error naming the path, nothing left behind */
  CHECK(ldmc_roofline_write("/nonexistent-dir/r.svg", "t", 1, 1, pts, 2) != LDMC_OK &&
        strstr(ldmc_last_error(), "/nonexistent-dir/r.svg") != NULL);
  char pdf[256];
  path_in(pdf, sizeof pdf, "roof.pdf");
  CHECK(ldmc_roofline_write(pdf, "t", 1, 1, pts, 2) == LDMC_ERR_INVALID && strstr(ldmc_last_error(), "roof.pdf") &&
        access(pdf, F_OK) != 0);
  CHECK(ldmc_roofline_write(path, "t", 1, 1, pts, -1) == LDMC_ERR_INVALID);
  if (getenv("LDMC_PLOT_KEEP")) printf("test_profile_machine: the rooflines are in %s\n", g_dir);
  else unlink(path), unlink(png);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/ldmc-test-machine.XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  test_benchmarks();
  test_interpolation();
  test_cache();
  test_roofline();
  if (!getenv("LDMC_PLOT_KEEP")) rmdir(g_dir);
  return test_summary("test_profile_machine");
}
