/* procstat: what the server's processes cost, from /proc/<pid>/status
 * (VmRSS) and /proc/<pid>/stat (utime + stime, all threads). */
#include "lg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kb(pid_t pid)
{
  char path[64], line[256];
  long kb = -1;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  if (!(f = fopen(path, "r")))
    return -1;
  while (fgets(line, sizeof(line), f))
    if (!strncmp(line, "VmRSS:", 6)) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

static double cpu_s(pid_t pid)
{
  char path[64], buf[1024], *p;
  unsigned long long ut = 0, st = 0;
  size_t n;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  if (!(f = fopen(path, "r")))
    return -1;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces: fields count from the last ')'. */
  if (!(p = strrchr(buf, ')')))
    return -1;
  /* After ')': state(3) ppid ... utime is field 14, stime 15. */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

void lg_proc_read(const pid_t *pids, int n, struct lg_proc_sample *out)
{
  memset(out, 0, sizeof(*out));
  out->ok = 1;
  for (int i = 0; i < n && i < LG_MAX_PIDS; i++) {
    long kb = rss_kb(pids[i]);
    double c = cpu_s(pids[i]);
    if (kb < 0 || c < 0) {
      out->ok = 0;
      continue;
    }
    out->pid_rss_kb[i] = kb;
    out->pid_cpu_s[i] = c;
    out->rss_kb += kb;
    out->cpu_s += c;
  }
}

long lg_kernel_kb(void)
{
  char line[256];
  long slab = -1, pages = -1;
  FILE *f;

  if ((f = fopen("/proc/meminfo", "r"))) {
    while (fgets(line, sizeof(line), f))
      if (!strncmp(line, "Slab:", 5)) {
        slab = strtol(line + 5, NULL, 10);
        break;
      }
    fclose(f);
  }
  if ((f = fopen("/proc/net/sockstat", "r"))) {
    while (fgets(line, sizeof(line), f)) {
      char *m;
      if (!strncmp(line, "TCP:", 4) && (m = strstr(line, " mem "))) {
        pages = strtol(m + 5, NULL, 10);
        break;
      }
    }
    fclose(f);
  }
  if (slab < 0 || pages < 0)
    return -1;
  return slab + pages * (sysconf(_SC_PAGESIZE) / 1024);
}
