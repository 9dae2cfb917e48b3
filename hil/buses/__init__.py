# Emulated buses (portable: bundled for the MicroPython unix port).
