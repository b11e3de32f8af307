/* The driver's subcommands. Each takes argv with argv[0] = the command name,
 * handles its own --help, and returns the process exit status (0 ok, 1 runtime
 * or file error, 2 usage error). */
#ifndef LDMC_TOOLS_COMMANDS_H
#define LDMC_TOOLS_COMMANDS_H

int ldmc_cmd_version(int argc, char **argv);
int ldmc_cmd_inspect(int argc, char **argv);
int ldmc_cmd_print(int argc, char **argv);
int ldmc_cmd_convert(int argc, char **argv);
int ldmc_cmd_run(int argc, char **argv);
int ldmc_cmd_compile(int argc, char **argv); /* tools/cmd_compile.c (passes side) */
int ldmc_cmd_stats(int argc, char **argv);   /* tools/cmd_stats.c (models side) */
int ldmc_cmd_profile(int argc, char **argv); /* tools/cmd_profile.c (profiler) */
int ldmc_cmd_train(int argc, char **argv);   /* tools/cmd_train.c (models + runtime/trainer.c) */
int ldmc_cmd_distill(int argc, char **argv); /* tools/cmd_distill.c (models/distill.h + runtime/trainer.c) */
int ldmc_cmd_plot(int argc, char **argv);    /* tools/cmd_plot.c (runtime/plot.c) */
int ldmc_cmd_sample(int argc, char **argv);  /* tools/cmd_sample.c (models/samplers.h, ldm_model.h) */
int ldmc_cmd_schedule(int argc, char **argv); /* tools/cmd_schedule.c (models/samplers.h) */
int ldmc_cmd_eval(int argc, char **argv);    /* tools/cmd_eval.c (models/eval.c, models/metrics.c) */
int ldmc_cmd_study(int argc, char **argv);   /* tools/cmd_study.c (tools/study*.c) */

#endif
