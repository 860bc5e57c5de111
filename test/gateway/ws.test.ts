import { gatewaySuite } from './suite.js';

gatewaySuite('ws');
