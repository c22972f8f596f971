#!/usr/bin/env python3
"""tests/http/pty_run.py — run a command on a new pseudo-terminal (its controlling terminal,
its stdin unless --stdin FILE, and its stderr; stdout goes to OUT), answer ANSWER and Enter
once it wrote PROMPT, and tell what the terminal showed and whether echo was off when it asked.

Usage: pty_run.py [--stdin FILE] PROMPT ANSWER OUT TRANSCRIPT -- COMMAND…
Prints "echo-at-prompt=on|off echo-after=on|off status=N". At most 10 s for each wait."""
import os
import pty
import select
import sys
import termios
import time


def read_until(fd, buf, done, deadline):
    while not done(buf) and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side closed
            return buf, True
        if not data:
            return buf, True
        buf += data
    return buf, False


def echo_of(fd):
    return "on" if termios.tcgetattr(fd)[3] & termios.ECHO else "off"


def main():
    args = sys.argv[1:]
    stdin = None
    if args[0] == "--stdin":
        stdin, args = args[1], args[2:]
    prompt, answer, out, transcript = (a.encode() if i < 2 else a
                                       for i, a in enumerate(args[:4]))
    assert args[4] == "--"
    command = args[5:]
    pid, fd = pty.fork()
    if pid == 0:
        o = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(o, 1)
        if stdin:
            os.dup2(os.open(stdin, os.O_RDONLY), 0)
        os.execvp(command[0], command)
    buf, closed = read_until(fd, b"", lambda b: prompt in b, time.monotonic() + 10)
    at_prompt = echo_of(fd) if not closed else "?"
    os.write(fd, answer + b"\n")
    # The child ends its line after the answer, then runs the transfer.
    buf, _ = read_until(fd, buf, lambda b: False, time.monotonic() + 10)
    _, status = os.waitpid(pid, 0)
    # The terminal keeps the modes its last user left it in.
    try:
        after = echo_of(fd)
    except termios.error:
        after = "?"
    with open(transcript, "wb") as f:
        f.write(buf)
    print("echo-at-prompt=%s echo-after=%s status=%d"
          % (at_prompt, after, os.waitstatus_to_exitcode(status)))


main()
