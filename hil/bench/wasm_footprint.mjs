// tally bench footprint on a 32-bit MicroPython: the WebAssembly port (npm
// @micropython/micropython-webassembly-pyscript), whose objects and GC
// blocks are the size an ESP32's are, with the bundle's ROMFS image mounted
// at /rom (IMAGE a .romfs file), or with the modules loaded into the heap
// from files (IMAGE the bundle's directory, copied into the port's MEMFS at
// /bundle). Drives hil/bench/footprint_mp.py phase by phase and interval by
// interval, returning to JavaScript in between: this port collects garbage
// only when no Python frame is running, so the heap is measured there.
//
//   node hil/bench/wasm_footprint.mjs PORT_MJS IMAGE HEAP_KIB INTERVALS [FLAGS]
// FLAGS, comma-separated: "nostress" (the agent without its stress
// histograms), "parts" (with component identity: footprint_mp.tag_twin()).
// Prints the same "FP key value" lines as footprint_mp.main().
import fs from "fs";
import { pathToFileURL } from "url";

const [portMjs, image, heapKib, intervals, flagArg] = process.argv.slice(2);
const flags = (flagArg || "").split(",");
const parts = flags.includes("parts");
const { loadMicroPython } = await import(pathToFileURL(portMjs).href);
let out = [];
const files = fs.statSync(image).isDirectory();
const opts = {
  heapsize: parseInt(heapKib) * 1024,
  stdout: (s) => out.push(s),
  stderr: (s) => process.stderr.write(s + "\n"),
};
if (!files) opts.romfs = new Uint8Array(fs.readFileSync(image));
const mp = await loadMicroPython(opts);
const py = (code) => { out = []; mp.runPython(code); return out; };
if (files) {
  const copy = (from, to) => {
    mp.FS.mkdirTree(to);
    for (const e of fs.readdirSync(from, { withFileTypes: true })) {
      if (e.isDirectory()) copy(from + "/" + e.name, to + "/" + e.name);
      else if (e.name.endsWith(".mpy")) mp.FS.writeFile(to + "/" + e.name, fs.readFileSync(from + "/" + e.name));
    }
  };
  copy(image, "/bundle");
  py("import sys\nsys.path.insert(0, '/bundle')");
}
const used = () => parseInt(py("print(F.used())")[0]);

// this port has no os.urandom (a board has): the ids and jitter the agent
// draws come from its PRNG instead, seeded the same in every run, so the runs
// compared (with and without stress histograms, with identity) draw the same
// epoch (a 32-bit int above 2^30 is an object of its own on a 32-bit port)
py(`import gc, os, time, random
import agent.port
if not hasattr(os, "urandom"):
    random.seed(15)
    agent.port.random_u32 = lambda: random.getrandbits(32)
import footprint_mp as F`);
const start = used();
py(parts ? "F.load(F.DEVICE + F.PARTS_DEVICE)" : "F.load(F.DEVICE)");
const device = used();
py(parts ? "F.load(F.EMULATION + F.PARTS_EMULATION)\nTAG = F.tag_twin()" : "F.load(F.EMULATION)\nTAG = None");
const base = used();
py(`W = F.World(5000, ${flags.includes("nostress") ? "False" : "True"}, TAG)
T = 0
def go():
    global T
    t = time.ticks_us()
    W.interval()
    T += time.ticks_diff(time.ticks_us(), t)`);
const img = parseInt(py("print(len(W.flash.image))")[0]);
const setup = used();
let early = null, peak = 0, tPrev = 0;
const chunks = [];                 // Python time per 100 intervals, for a median
const n = parseInt(intervals);
const pyTime = () => parseInt(py("print(T)")[0]);
for (let i = 0; i < n; i++) {
  py("go()");
  if (i % 100 === 99) {
    const t = pyTime();
    chunks.push((t - tPrev) / 100);
    tPrev = t;
    const live = used();
    if (live > peak) peak = live;
    if (early === null) early = live;
  }
}
const end = used();
const fp = (k, v) => console.log("FP " + k + " " + v);
fp("heap_code", base);
fp("heap_code_device", device - start);
fp("heap_code_emulation", base - device);
fp("heap_data_after_setup", setup - base - img);
fp("intervals", n);
chunks.sort((a, b) => a - b);
fp("us_per_interval", Math.floor(chunks.length ? chunks[chunks.length >> 1] : pyTime() / n));
fp("heap_data_after_100_intervals", (early ?? end) - base - img);
fp("heap_data_at_end", end - base - img);
fp("heap_data_peak", peak - base - img);
fp("emulated_flash_bytes", img);
console.log("FP acked " + py("print(W.log.acked, 'of', W.log.next_seq - 1)")[0]);
fp("hist_bins", py("print(W.ag.stress.n if W.ag.stress else 0)")[0]);
fp("part_slots", py("print(W.parts.n if W.parts else 0)")[0]);
fp("part_events", py("print(W.parts.events if W.parts else 0)")[0]);
console.log("FP END");
