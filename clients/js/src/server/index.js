// mqtt-sse-bridge/server: the in-app SSE hub's calls for Node.js backends,
// on MQTT (mqtt.js) to the broker that the bridges read.
//   const hub = await connectHub({ url: 'mqtt://127.0.0.1:1883' });
//   await hub.broadcast(userId, createSSEEvent('timer', 'started', payload, deviceId), deviceId);
export { connectHub } from './hub.js';
export { createSSEEvent, HubError } from './event.js';
