// Finds the app's top-level X window and closes it the way a window
// manager's close button does: with a WM_DELETE_WINDOW client message, which
// GTK turns into the window's close request. xwininfo comes from x11-utils
// and python3-xlib sends the message. scripts/setup.sh installs both
// Debian packages. Debian's own Python runs the script, because
// a python3 found earlier on PATH (pyenv, a venv) lacks Debian's modules.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Time limit of one xwininfo or python3 call. */
const TOOL_TIMEOUT_MS = 10_000;

/** Debian's Python, which python3-xlib installs into. */
const SYSTEM_PYTHON = '/usr/bin/python3';

const SEND_DELETE_WINDOW = `
import sys
from Xlib import X, display, protocol

connection = display.Display()
window = connection.create_resource_object("window", int(sys.argv[1], 16))
protocols = connection.intern_atom("WM_PROTOCOLS")
delete_window = connection.intern_atom("WM_DELETE_WINDOW")
message = protocol.event.ClientMessage(
    window=window, client_type=protocols, data=(32, [delete_window, X.CurrentTime, 0, 0, 0])
)
window.send_event(message, event_mask=X.NoEventMask)
connection.flush()
`;

/**
 * Returns the id (such as 0x1200003) of the top-level window titled
 * `title`, or null when there is none. GTK also names some child windows
 * after the app, so only direct children of the root window count.
 */
export async function topLevelWindow(title) {
  const { stdout } = await execFileAsync('xwininfo', ['-root', '-children'], { timeout: TOOL_TIMEOUT_MS });
  for (const line of stdout.split('\n')) {
    const match = /^\s*(0x[0-9a-f]+) "([^"]*)"/.exec(line);
    if (match && match[2] === title) {
      return match[1];
    }
  }
  return null;
}

/** Returns whether the window `id` is mapped and viewable. */
export async function isViewable(id) {
  const { stdout } = await execFileAsync('xwininfo', ['-id', id], { timeout: TOOL_TIMEOUT_MS });
  return /Map State:\s*IsViewable/.test(stdout);
}

/** Sends WM_DELETE_WINDOW to the window `id`, as a close button does. */
export async function requestClose(id) {
  await execFileAsync(SYSTEM_PYTHON, ['-c', SEND_DELETE_WINDOW, id], { timeout: TOOL_TIMEOUT_MS });
}
