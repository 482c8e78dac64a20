// mqtt-sse-bridge/client: the browser client (sse-client.js) and who this
// browser is (device.js). The bridge serves the same two files at its web root.
export { SSEClient, sseClient, backoffDelay, buildUrl } from './sse-client.js';
export {
  getDeviceId, getDeviceName, setDeviceName, isValidDeviceId, newDeviceId, describeUserAgent,
} from './device.js';
