// The hand-written declarations (types/server/) against the JavaScript
// (src/server/, typed by its JSDoc): every declared name exists there, with a
// type that fits. A change to one side that the other lacks fails here.
import * as impl from '../../../src/server/index.js';
import type * as decl from 'mqtt-sse-bridge/server';

// values: the JavaScript's fit the declarations
export const values: {
  connectHub: typeof decl.connectHub;
  createSSEEvent: typeof decl.createSSEEvent;
  HubError: typeof decl.HubError;
} = impl;

// the JavaScript's hub is the declared one, member by member
export async function hub(options: decl.HubOptions): Promise<decl.Hub> {
  return impl.connectHub(options);
}

// and the declared functions fit where the JavaScript's are expected
export const back: {
  createSSEEvent: typeof impl.createSSEEvent;
} = {} as typeof decl;
