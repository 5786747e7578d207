/**
 * The edge device: a Hono app on Cloudflare Workers. It will keep its owner's private shards, run the frozen ONNX
 * prefix and upload activations (see docs/ARCHITECTURE in ../shared). For now it answers health checks.
 */
import { Hono } from 'hono';

export interface DeviceEnv {
  DEVICE_ID: string;
}

const app = new Hono<{ Bindings: DeviceEnv }>();

app.get('/health', (c) => c.json({ ok: true, device: c.env.DEVICE_ID, role: 'splitfrozen-device' }));

export default app;
