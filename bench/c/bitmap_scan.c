/* Baseline for bitmap.scan.*: find every run of set bits in a bitmap file, the way a
 * careful C implementation would (64-bit words, ctz, skip empty/full words).
 * usage: bitmap_scan FILE BITS REPEATS  -> prints "<runs> <seconds per scan...>" */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t next_set(const uint64_t *w, uint64_t n, uint64_t size, uint64_t from) {
  if (from >= size) return size;
  uint64_t i = from >> 6;
  uint64_t word = w[i] & (~0ULL << (from & 63));
  while (word == 0) {
    if (++i >= n) return size;
    word = w[i];
  }
  uint64_t r = (i << 6) + (uint64_t)__builtin_ctzll(word);
  return r < size ? r : size;
}

static uint64_t next_zero(const uint64_t *w, uint64_t n, uint64_t size, uint64_t from) {
  if (from >= size) return size;
  uint64_t i = from >> 6;
  uint64_t word = ~w[i] & (~0ULL << (from & 63));
  while (word == 0) {
    if (++i >= n) return size;
    word = ~w[i];
  }
  uint64_t r = (i << 6) + (uint64_t)__builtin_ctzll(word);
  return r < size ? r : size;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s FILE BITS REPEATS\n", argv[0]); return 2; }
  uint64_t size = strtoull(argv[2], 0, 10);
  int repeats = atoi(argv[3]);
  uint64_t n = (size + 63) / 64;
  uint64_t *w = malloc(n * 8);
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(w, 8, n, f) != n) { perror("read"); return 1; }
  fclose(f);
  volatile uint64_t sink = 0;
  uint64_t runs = 0;
  for (int r = 0; r < repeats; r++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t count = 0, total = 0;
    uint64_t pos = next_set(w, n, size, 0);
    while (pos < size) {
      uint64_t end = next_zero(w, n, size, pos);
      count++;
      total += end - pos;
      pos = next_set(w, n, size, end);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    sink += total;
    runs = count;
    printf("%s%.9f", r ? " " : "", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
  }
  printf("\n%llu\n", (unsigned long long)runs);
  return (int)(sink & 0);
}
