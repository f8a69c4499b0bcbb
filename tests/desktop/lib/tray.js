// Reads and clicks the app's tray menu over the D-Bus session bus, as a
// desktop's tray area does. On Linux the tray icon is a
// StatusNotifierItem (libayatana-appindicator) whose menu is exported with
// the com.canonical.dbusmenu interface. The calls go through busctl, whose
// JSON output needs no parsing of D-Bus text formats.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Time limit of one busctl call. */
const BUSCTL_TIMEOUT_MS = 10_000;

const ITEM_INTERFACE = 'org.kde.StatusNotifierItem';
const MENU_INTERFACE = 'com.canonical.dbusmenu';
const ITEM_PATH_PATTERN = /^\/org\/ayatana\/NotificationItem\/[^/]+$/;

/** Runs busctl on the session bus and returns its parsed JSON output, or null. */
async function busctl(args) {
  const { stdout } = await execFileAsync('busctl', ['--user', '--no-pager', '--json=short', ...args], {
    timeout: BUSCTL_TIMEOUT_MS,
  });
  return stdout.trim() === '' ? null : JSON.parse(stdout);
}

/** Returns the object paths that the bus connection `name` exports. */
async function objectPaths(name) {
  const { stdout } = await execFileAsync('busctl', ['--user', '--no-pager', 'tree', '--list', name], {
    timeout: BUSCTL_TIMEOUT_MS,
  });
  return stdout.split('\n').map((line) => line.trim()).filter(Boolean);
}

/** A tray icon found on the bus. */
export class Tray {
  constructor(busName, itemPath, menuPath) {
    this.busName = busName;
    this.itemPath = itemPath;
    this.menuPath = menuPath;
  }

  /**
   * Finds the tray icon that the process `pid` exports. Returns null when
   * that process owns no StatusNotifierItem on the session bus.
   */
  static async find(pid) {
    const connections = (await busctl(['list'])).filter((entry) => entry.pid === pid && entry.name.startsWith(':'));
    for (const { name } of connections) {
      const itemPath = (await objectPaths(name).catch(() => [])).find((objectPath) => ITEM_PATH_PATTERN.test(objectPath));
      if (!itemPath) continue;
      const menu = await busctl(['get-property', name, itemPath, ITEM_INTERFACE, 'Menu']);
      return new Tray(name, itemPath, menu.data);
    }
    return null;
  }

  /** Returns a property of the StatusNotifierItem, such as IconName. */
  async property(name) {
    return (await busctl(['get-property', this.busName, this.itemPath, ITEM_INTERFACE, name])).data;
  }

  /**
   * Returns the top-level menu entries in order as { id, label, enabled,
   * separator }.
   */
  async menu() {
    // GetLayout(parentId 0, recursionDepth -1, no property filter). The
    // `--` keeps busctl from reading -1 as an option.
    const reply = await busctl(['call', this.busName, this.menuPath, MENU_INTERFACE, 'GetLayout', 'iias', '0', '--', '-1', '0']);
    const [, [, , children]] = reply.data;
    return children.map(({ data: [id, properties] }) => ({
      id,
      label: properties.label?.data ?? '',
      enabled: properties.enabled?.data ?? true,
      separator: properties.type?.data === 'separator',
    }));
  }

  /** Returns the menu entry whose label is `label`, or throws. */
  async entry(label) {
    const entries = await this.menu();
    const entry = entries.find((candidate) => candidate.label === label);
    if (!entry) {
      throw new Error(`the tray menu has no "${label}" entry: ${entries.map((candidate) => candidate.label).join(', ')}`);
    }
    return entry;
  }

  /** Clicks the menu entry `label`, as a tray host does when the user picks it. */
  async click(label) {
    const { id } = await this.entry(label);
    await busctl(['call', this.busName, this.menuPath, MENU_INTERFACE, 'Event', 'isvu', String(id), 'clicked', 'i', '0', '0']);
  }
}

/**
 * Emits the screensaver's ActiveChanged(true) signal on the session bus,
 * as KDE and other desktops do when the screen locks.
 */
export async function emitScreenLocked() {
  await busctl(['emit', '/org/freedesktop/ScreenSaver', 'org.freedesktop.ScreenSaver', 'ActiveChanged', 'b', 'true']);
}
