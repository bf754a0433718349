/*
 * Baseline for fault.local.roundtrip: the same round trip as the native backend, with
 * no JavaScript in it. A "vCPU" thread touches missing pages one after another; a
 * handler thread reads each fault from the userfault fd and resolves it with UFFDIO_COPY
 * from a page already at hand; the vCPU resumes. Prints the per-touch latency p50/p99 in
 * microseconds as JSON.
 *
 * usage: uffd_roundtrip PAGES VCPU_CPU HANDLER_CPU SPIN
 *   VCPU_CPU / HANDLER_CPU: CPU to pin each thread to (same CPU = one-core placement)
 *   SPIN: 1 = the handler spins on the non-blocking fd instead of sleeping in poll(2)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static int uffd;
static int spin;
static int handler_cpu;
static volatile int quit;
static char source[4096] __attribute__((aligned(4096)));

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void* handler(void* arg) {
  (void)arg;
  pin(handler_cpu);
  struct uffd_msg msg;
  while (!quit) {
    ssize_t n = read(uffd, &msg, sizeof msg);
    if (n < 0) {
      if (errno != EAGAIN) break;
      if (!spin) {
        struct pollfd p = {uffd, POLLIN, 0};
        poll(&p, 1, 100);
      }
      continue;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    struct uffdio_copy c = {.dst = msg.arg.pagefault.address & ~4095ULL, .src = (uintptr_t)source, .len = 4096, .mode = 0};
    if (ioctl(uffd, UFFDIO_COPY, &c) != 0 && errno != EEXIST) {
      perror("UFFDIO_COPY");
      exit(1);
    }
  }
  return NULL;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s PAGES VCPU_CPU HANDLER_CPU SPIN\n", argv[0]);
    return 2;
  }
  size_t pages = strtoul(argv[1], 0, 10);
  int vcpu_cpu = atoi(argv[2]);
  handler_cpu = atoi(argv[3]);
  spin = atoi(argv[4]);
  memset(source, 0x5a, sizeof source);

  uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) {
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) uffd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
      perror("userfaultfd");
      return 1;
    }
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    perror("UFFDIO_API");
    return 1;
  }
  size_t len = pages * 4096;
  uint8_t* mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  struct uffdio_register reg = {.range = {(uintptr_t)mem, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
    perror("UFFDIO_REGISTER");
    return 1;
  }

  pthread_t h;
  pthread_create(&h, NULL, handler, NULL);
  pin(vcpu_cpu);
  double* lat = malloc(pages * sizeof(double));
  for (size_t i = 0; i < pages; i++) {
    volatile uint8_t* p = mem + i * 4096;
    int64_t t0 = now_ns();
    *p = (uint8_t)(*p + 1);
    lat[i] = (double)(now_ns() - t0) / 1000.0;
  }
  quit = 1;
  pthread_join(h, NULL);
  qsort(lat, pages, sizeof(double), cmp);
  printf("{\"p50\": %.3f, \"p99\": %.3f, \"n\": %zu}\n", lat[(pages * 50 + 99) / 100 - 1], lat[(pages * 99 + 99) / 100 - 1], pages);
  return 0;
}
