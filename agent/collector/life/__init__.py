"""Asset life at the collector (CPython only; never flashed): the ISO 13374
health-assessment, prognostics and advisory blocks over the device's
stress histograms and swap events (CIRCULAR.md §2, §5, §6).

- cards.py: versioned component-type cards (TOML in cards/), validated;
- bins.py: the histogram layouts (bin edges per histogram and version);
- models.py: damage per mechanism (Miner, run time and cycles, Arrhenius,
  Peck, ISO 281 from a load spectrum, TM-21, contactor electrical life);
- rul.py: equivalent age -> remaining life P10/P50/P90 (Weibull), Monte
  Carlo over the card's parameter ranges, condition collars and caps;
- rules.py: the ordered next-use rule table with its trace and health bands.
The ledger that feeds them is agent/collector/components.py."""
