# The disk's own stalls, without the engine: 8 kB overwrites of one file,
# each followed by fdatasync (as a till's commit flushes the WAL), every
# 5 ms for N seconds; prints how many it made and those over 10 ms, with
# the instant each ended (UTC). Run it alone for the disk's baseline, or
# beside something else, e.g. the commit of a DROP TABLE of a 160 MB
# unlogged table built a minute before:
#
#   python3 docs/bench/fsync-beside.py 12 & sleep 4
#   psql -h 127.0.0.1 -U postgres -c '\timing on' -c begin -c 'DROP TABLE zz' -c commit; wait
#
# The file goes next to the cluster (/var/lib/postgresql), on its disk.
import os
import sys
import time

PATH = "/var/lib/postgresql/fsync-beside.dat"
PAGES = 128

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 12
fd = os.open(PATH, os.O_RDWR | os.O_CREAT, 0o600)
try:
    os.write(fd, bytes(8192 * PAGES))
    os.fsync(fd)
    end, n, slow = time.time() + seconds, 0, []
    while time.time() < end:
        os.pwrite(fd, os.urandom(8192), (n % PAGES) * 8192)
        start = time.perf_counter()
        os.fdatasync(fd)
        ms = (time.perf_counter() - start) * 1000
        if ms > 10:
            now = time.time()
            slow.append(f"{time.strftime('%H:%M:%S', time.gmtime(now))}.{int(now % 1 * 1000):03d} {ms:.1f} ms")
        n += 1
        time.sleep(0.005)
    print(f"{n} fdatasyncs, {len(slow)} over 10 ms:", ", ".join(slow) or "none")
finally:
    os.close(fd)
    os.remove(PATH)
