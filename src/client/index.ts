export { connect, CaptionClient, CaptionClientError, type ConnectOptions, type CaptionClientEvents } from './client.js';
export type * from '../protocol/messages.js';
