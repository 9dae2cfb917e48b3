"""Metric names in the words of the people who read them: one plain label,
the unit as a person writes it, and one sentence of explanation per metric
(the console's glossary, `tally report`'s legend, `make demo`'s output).

Collector side (CPython): it is not flashed (hil/harness/mpbuild.py takes
agent/*.py, not agent/collector/). A name not listed is shown as it is.
"""

# metric -> (label, unit shown, what it means)
LABELS = {
    "run_time": ("Running time", "h", "Time the asset was running (its motor or lamp on)."),
    "cycles": ("Start cycles", "starts", "How many times the asset started."),
    "energy": ("Energy used (measured at the asset)", "kWh",
               "Electrical energy the asset drew, measured by the board's power monitor."),
    "air": ("Compressed air delivered", "m\u00b3", "Volume of free air the compressor delivered."),
    "light": ("Light delivered", "lux\u00b7h", "Illuminance times time: the light service delivered."),
    "water": ("Water pumped", "m\u00b3", "Volume of water the pump delivered."),
    "vbus_min": ("Lowest supply voltage", "V", "Lowest DC supply voltage seen in the interval."),
    "i_max": ("Highest current", "A", "Highest current drawn in the interval."),
    "temp_min": ("Lowest temperature", "\u00b0C", "Lowest temperature in the interval."),
    "temp_max": ("Highest temperature", "\u00b0C", "Highest temperature in the interval."),
    "temp_mean": ("Average temperature", "\u00b0C", "Mean temperature over the interval."),
    "rh_mean": ("Average humidity", "% RH", "Mean relative humidity over the interval."),
    "hot_time": ("Time running hot", "h", "Time spent above the hot threshold (wears parts)."),
    "thermal_cycles": ("Heat-up/cool-down cycles", "cycles", "Times the asset heated up and cooled down."),
    "mains_energy": ("Energy used (utility meter)", "kWh", "Energy counted by the mains meter."),
    "mains_power_max": ("Peak power (utility meter)", "W", "Highest power the mains meter saw."),
    "mains_voltage_min": ("Lowest mains voltage", "V", "Lowest mains voltage in the interval."),
    "mains_register": ("Utility meter reading", "kWh", "The mains meter's own register, as read."),
    "vib_rms": ("Vibration", "m/s\u00b2", "Root-mean-square vibration in the interval."),
    "err_nack": ("Bus errors: no answer", "count", "A sensor did not acknowledge on its bus."),
    "err_crc": ("Bus errors: corrupted", "count", "A sensor's answer failed its checksum."),
    "err_timeout": ("Bus errors: timed out", "count", "A sensor did not answer in time."),
    "err_range": ("Readings out of range", "count", "A reading outside what the sensor can measure."),
    "backoffs": ("Sensor back-offs", "count", "Times a failing sensor was rested before retrying."),
    "sync_ok": ("Uploads completed", "count", "Upload rounds that finished."),
    "sync_tries": ("Upload attempts", "count", "Upload rounds started."),
    "fail_conn": ("Connection failures", "count", "Times the device could not reach the server."),
    "fail_pub": ("Send failures", "count", "Messages the device could not send."),
    "republished": ("Messages re-sent", "count", "Messages sent again because no receipt came."),
    "bad_acks": ("Bad receipts", "count", "Receipts from the server that failed their check."),
    "bad_configs": ("Refused settings", "count", "Settings pushed to the device that it refused."),
    "bytes_sent": ("Data sent", "bytes", "Bytes the device sent."),
    "unacked_s": ("Oldest unconfirmed data", "s", "Age of the oldest record the server has not confirmed."),
    "config": ("Settings version", "", "Version of the settings the device runs."),
    "overruns": ("Missed sample times", "count", "Sample times the device was too busy to take."),
    "log_errors": ("Storage errors", "count", "Errors of the device's flash log."),
    "coalesced": ("Intervals merged", "count", "Intervals merged into one record when storage ran low."),
    "dropped": ("Intervals dropped", "count", "Intervals lost because storage was full."),
    "depth": ("Records waiting to send", "records", "Records stored on the device, not yet confirmed."),
    "mem_free": ("Free memory", "bytes", "Lowest free memory in the interval."),
}

# raw ledger unit -> (unit shown, factor from the raw unit); only the conversions people expect
UNIT_SHOWN = {"s": ("h", 1 / 3600), "Wh": ("kWh", 1 / 1000), "m3": ("m\u00b3", 1), "Cel": ("\u00b0C", 1),
              "%RH": ("% RH", 1), "By": ("bytes", 1)}


def label(name):
    """The plain label of a metric (its name when it has none)."""
    e = LABELS.get(name)
    return e[0] if e else name


def describe(name):
    """(label, unit shown, explanation) of a metric; unknown: (name, "", "")."""
    return LABELS.get(name) or (name, "", "")


def shown(value, unit):
    """A value in a raw ledger unit -> (value, unit) as people read it
    (seconds as hours, Wh as kWh)."""
    u = UNIT_SHOWN.get(unit)
    if u is None:
        return value, unit
    return value * u[1], u[0]


def legend(names, units=True):
    """Lines 'name = Label (unit)' for the names given, sorted, known ones
    only; units=False leaves the unit out (where a table shows its own)."""
    out = []
    for n in sorted(set(names)):
        e = LABELS.get(n)
        if e:
            out.append("%s = %s%s" % (n, e[0], " (%s)" % e[1] if e[1] and units else ""))
    return out
