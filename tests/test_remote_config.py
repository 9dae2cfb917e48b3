"""Remote config end to end through a real mosquitto: `tally config push`
signs and publishes a retained config, the device applies it and answers on
cfgack, the collector records the answer, and `tally config status` shows it;
a config the device's rules refuse never leaves the CLI."""
import time

from agent import cose
from agent.agent import Agent
from agent.cli import main
from agent.clock import VirtualClock
from agent.collector.service import CollectorService
from agent.collector.store import Collector
from agent.log import file_log
from agent.port.mqtt_paho import PahoTransport
from boards.emulated import Emulation

MASTER = "00112233445566778899aabbccddeeff"
DEV = "cfg-dev"


def test_config_push_applied_and_reported(broker, tmp_path, capsys):
    db = str(tmp_path / "ledger.sqlite")
    key = cose.device_key(bytes.fromhex(MASTER), DEV)
    col = Collector(db, keys=lambda d: cose.device_key(bytes.fromhex(MASTER), d))
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    clock = VirtualClock()
    t = PahoTransport(DEV, broker.url)
    ag = Agent(DEV, Emulation(clock, seed=2).channels(), file_log(str(tmp_path / "l.bin"), DEV),
               clock, transport=t, interval_ms=60000, sample_ms=60000,
               uplink_opts=dict(key=key)).start()

    def until(cond, secs=10):
        end = time.monotonic() + secs
        while time.monotonic() < end and not cond():
            clock.advance_ms(1000)
            ag.tick()
            svc.pump(0.01)
        return cond()

    try:
        assert until(lambda: t.connected() and ag.uplink._session is not None)
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "interval_s=120", "--set", "window=6"]) == 0
        assert until(lambda: (col.config_status(DEV) or {}).get("ok") is True)
        assert ag.uplink.window == 6 and ag.uplink.config.version == 1
        assert until(lambda: ag.interval == 120000)
        capsys.readouterr()
        assert main(["config", "status", DEV, "--db", db, "--master-key", MASTER]) == 0
        assert "version 1 applied; in force: 1" in capsys.readouterr().out
        # out of range: the CLI refuses it with the device's own rule, nothing is published
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "window=0"]) == 2
        assert "window=0 is not an integer in 1..32" in capsys.readouterr().err
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "interval_s=fast"]) == 2
        assert "'fast' is not an integer" in capsys.readouterr().err
        until(lambda: False, 1)
        assert ag.uplink.config.version == 1 and ag.uplink.window == 6
    finally:
        t.close()
        svc.stop()
        col.close()
