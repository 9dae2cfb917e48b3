# The console line of a logged interval (tally run, the firmware): in a
# module of its own, loaded by what prints it, not by the agent loop. Portable.

from agent.agent import SYSTEM_METRICS
from agent.channels import ERROR_METRICS
from agent.log import R_VALUES


def _num(v, scale):
    if scale >= 0:
        return str(v * 10 ** scale)
    d = 10 ** -scale
    a = -v if v < 0 else v
    return "%s%d.%0*d" % ("-" if v < 0 else "", a // d, -scale, a % d)


def summary(meter, rec):
    """The console line for a logged interval rec (a log record): its seq,
    every odometer the board's sensors give (whatever the asset: air, water,
    light, run time, energy...) in its unit, the error count, the log depth
    and the batches acked."""
    skip = [m[0] for m in ERROR_METRICS] + [m[0] for m in SYSTEM_METRICS]
    vals = rec[R_VALUES]
    out = ["interval seq=%d" % rec[0]]
    for i, m in enumerate(meter.schema):
        if m[3] == "odo" and m[0] not in skip:
            out.append("%s=%s%s" % (m[0], _num(vals[i], m[2]), "" if m[1] == "count" else " " + m[1]))
    err = 0
    for k in ("err_nack", "err_crc", "err_timeout", "err_range"):
        err += vals[meter.index(k)]
    out.append("errors=%d depth=%d sync_ok=%d" % (err, vals[meter.index("depth")],
                                                   vals[meter.index("sync_ok")]))
    return " ".join(out)
