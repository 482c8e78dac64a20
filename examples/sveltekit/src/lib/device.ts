// Which device this tab is. By default the browser's own id (mqtt-sse-bridge/client's
// getDeviceId: random, kept in localStorage, so every tab of a browser is one device).
// `?device=<id>&name=<name>` makes a tab another device (two "devices" in one browser);
// the choice stays with the tab (sessionStorage).
import { getDeviceId, getDeviceName, isValidDeviceId } from 'mqtt-sse-bridge/client';
import type { Device } from './timer';

function kept(key: string, value: string | null): string | null {
  try {
    if (value) sessionStorage.setItem(`focus-${key}`, value);
    return sessionStorage.getItem(`focus-${key}`);
  } catch {
    return value;
  }
}

export function thisDevice(url: URL = new URL(location.href)): Device {
  const asked = url.searchParams.get('device');
  const id = kept('device', isValidDeviceId(asked) ? asked : null);
  const name = kept('name', url.searchParams.get('name'));
  if (isValidDeviceId(id)) {
    return { deviceId: id, deviceName: name || id.charAt(0).toUpperCase() + id.slice(1) };
  }
  return { deviceId: getDeviceId(), deviceName: name || getDeviceName() };
}
