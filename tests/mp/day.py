# One simulated day of the agent loop on the emulated board: sample, meter,
# append to the log, encode batches, ack them. Runs unchanged under CPython
# and MicroPython; prints one line per batch ("B <hex>") and a closing line
# with heap figures, so tests can compare the two runs value for value.
import sys
import gc
import binascii

from agent.clock import VirtualClock
from agent.log import file_log
from agent.agent import Agent
from agent import batch
from agent import port
from boards.emulated import Emulation


def run(path, hours=24, sample_ms=10000, seed=42, batch_max=30):
    gc.collect()
    code_heap = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    port.remove(path)
    port.remove(path + ".tmp")
    clock = VirtualClock()
    world = Emulation(clock, seed=seed, serial="loopback")
    log = file_log(path, "mp-day", capacity=32 * 1024)
    agent = Agent("mp-day", world.channels(), log, clock, interval_ms=60000,
                  sample_ms=sample_ms, reason="poweron").start()
    end = hours * 3600000
    t = 0
    batches = 0
    low = None
    while t < end:
        clock.advance_ms(sample_ms)
        agent.tick()
        t += sample_ms
        if log.depth() >= batch_max or (t >= end and log.depth()):
            run_ = batch.take_run(log.pending(batch_max), batch_max)
            payload = batch.encode(run_)
            # in small pieces: a fragmented small heap may lack one 3 KB block
            sys.stdout.write("B ")
            for i in range(0, len(payload), 64):
                sys.stdout.write(binascii.hexlify(payload[i:i + 64]).decode())
            sys.stdout.write("\n")
            log.ack(run_[0][3], run_[-1][0])
            batches += 1
            gc.collect()
            free = port.mem_free()
            if low is None or free < low:
                low = free
    agent.stop()
    print("END batches=%d records=%d heap_after_imports=%d mem_free_min=%d"
          % (batches, agent.records, code_heap, low or 0))


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tally-mp-day.log",
        int(sys.argv[2]) if len(sys.argv) > 2 else 24)
