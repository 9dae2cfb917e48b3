# The only place that knows which platform we are on. Everything else imports
# what it needs from here.
import sys

if sys.implementation.name == "micropython":
    from agent.port.micropython import *  # noqa: F401,F403
else:
    from agent.port.cpython import *  # noqa: F401,F403
