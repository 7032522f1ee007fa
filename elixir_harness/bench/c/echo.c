/* The benchmark's C floor: a bare {packet, 4} echo on stdin/stdout. It reads whatever stdin
 * holds into one buffer, writes every complete frame back unchanged with one write, keeps an
 * incomplete trailing frame for the next read, and exits on end of input. It decodes nothing.
 * Compiled by the benchmark (bench/lib/c_echo.exs) with `cc -O2`. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(void) {
  size_t cap = 1 << 20, len = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) return 1;
  for (;;) {
    if (len == cap) {
      cap *= 2;
      unsigned char *grown = realloc(buf, cap);
      if (!grown) return 1;
      buf = grown;
    }
    ssize_t r = read(0, buf + len, cap - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (r == 0) return 0;
    len += (size_t)r;
    size_t done = 0;
    while (len - done >= 4) {
      uint32_t size = ((uint32_t)buf[done] << 24) | ((uint32_t)buf[done + 1] << 16) |
                      ((uint32_t)buf[done + 2] << 8) | buf[done + 3];
      if (len - done - 4 < size) break;
      done += 4 + size;
    }
    if (done > 0) {
      if (write_all(buf, done) < 0) return 1;
      memmove(buf, buf + done, len - done);
      len -= done;
    }
  }
}
