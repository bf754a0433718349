#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal (TERM=xterm), sends it SIGINT once its output matches
a regular expression, and prints one JSON line: the output (latin-1) and the exit code.
Used by test/cli/interrupt.test.ts: a real Ctrl-C needs a real terminal.

    ttyRun.py PATTERN TIMEOUT_S COMMAND ARGS...
"""
import json, os, pty, re, select, signal, sys, time

pattern, timeout, args = re.compile(sys.argv[1].encode()), float(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.environ['TERM'] = 'xterm'
    os.execvp(args[0], args)
out, sent, start = b'', None, time.time()
while True:
    ready, _, _ = select.select([fd], [], [], 0.02)
    if ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    if sent is None and pattern.search(out):
        os.kill(pid, signal.SIGINT)
        sent = len(out)
    if time.time() - start > timeout:
        os.kill(pid, signal.SIGKILL)
        break
_, status = os.waitpid(pid, 0)
print(json.dumps({'output': out.decode('latin-1'), 'exitCode': os.waitstatus_to_exitcode(status), 'signalledAt': sent}))
