// The hand-written declarations (types/client/) against the JavaScript
// (src/client/, typed by its JSDoc): every declared name exists there, with a
// type that fits. A change to one side that the other lacks fails here.
import * as impl from '../../src/client/index.js';
import type * as implSse from '../../src/client/sse-client.js';
import type * as decl from 'mqtt-sse-bridge/client';

type Same<A, B> = (<G>() => G extends A ? 1 : 2) extends (<G>() => G extends B ? 1 : 2) ? true : false;

// values: the JavaScript's fit the declarations
export const values: {
  SSEClient: typeof decl.SSEClient;
  sseClient: typeof decl.sseClient;
  backoffDelay: typeof decl.backoffDelay;
  buildUrl: typeof decl.buildUrl;
  getDeviceId: typeof decl.getDeviceId;
  getDeviceName: typeof decl.getDeviceName;
  setDeviceName: typeof decl.setDeviceName;
  isValidDeviceId: typeof decl.isValidDeviceId;
  newDeviceId: typeof decl.newDeviceId;
  describeUserAgent: typeof decl.describeUserAgent;
} = impl;

// types: the same on both sides
export const types: [
  Same<decl.SSEEvent<{ a: number }>, implSse.SSEEvent<{ a: number }>>,
  Same<decl.SSEEvent, implSse.SSEEvent>,
  Same<decl.ConnectOptions, implSse.ConnectOptions>,
  Same<decl.ConnectionState, implSse.ConnectionState>,
  Same<decl.StateDetail, implSse.StateDetail>,
  Same<decl.ResyncPayload, implSse.ResyncPayload>,
  Same<decl.Role, implSse.Role>,
  Same<decl.SSEClientEnvironment, implSse.SSEClientEnvironment>,
] = [true, true, true, true, true, true, true, true];

// and the JavaScript's client is the declared one, member by member
export const client: decl.SSEClient = new impl.SSEClient();
