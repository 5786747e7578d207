import { describe, expect, it } from 'vitest';
import { ConfigError, serverConfig } from './config.ts';

const complete = { SPLITFROZEN_OPERATOR_TOKEN: 'op', SPLITFROZEN_ROUND_SECRET: 'rs', SPLITFROZEN_S3_BUCKET: 'b' };
const refusal = (argv: string[], env: Record<string, string>) => {
  try {
    serverConfig(argv, env);
    return ['accepted'];
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message.split('\n');
  }
};

describe('server settings', () => {
  it('reports every missing or bad setting at once, each with its fix', () => {
    expect(refusal(['--port', 'x'], { SPLITFROZEN_BACKEND: 'gpu', SPLITFROZEN_S3_ENDPOINT: 'ftp://s3' })).toEqual([
      '6 settings to fix:',
      '  SPLITFROZEN_S3_ENDPOINT is "ftp://s3": set it to the storage\'s http(s) URL, or leave it unset for AWS S3',
      '  SPLITFROZEN_PORT (--port) is "x": set it to a port number, 0 to 65535 (0: any free port)',
      '  SPLITFROZEN_OPERATOR_TOKEN is not set: choose a secret; the CLI and the dashboard send it',
      "  SPLITFROZEN_ROUND_SECRET is not set: the master round secret; each device's ROUND_SECRET is derived from it (npm run cli -- device-secret)",
      '  SPLITFROZEN_S3_BUCKET is not set: the bucket for activations, checkpoints and adapters',
      expect.stringMatching(/^ {2}SPLITFROZEN_BACKEND \(--backend\) is "gpu": use auto, /),
    ]);
  });

  it('refuses a SPLITFROZEN_ variable it does not know, naming the one most likely meant', () => {
    expect(refusal([], { ...complete, SPLITFROZEN_S3_BUCKE: 'b', SPLITFROZEN_URL: 'http://127.0.0.1:8080' })).toEqual([
      "SPLITFROZEN_S3_BUCKE is not a setting: did you mean 'SPLITFROZEN_S3_BUCKET'?",
    ]);
    expect(refusal([], { ...complete, SPLITFROZEN_COLOUR: 'on' })).toEqual([
      expect.stringMatching(/^SPLITFROZEN_COLOUR is not a setting: the settings are SPLITFROZEN_HOST, /),
    ]);
  });

  it("takes a static S3 key when both halves are set, else the AWS SDK's credential chain, and refuses half a key", () => {
    expect(
      serverConfig([], { ...complete, SPLITFROZEN_S3_ACCESS_KEY_ID: 'k', SPLITFROZEN_S3_SECRET_ACCESS_KEY: 's', SPLITFROZEN_S3_SESSION_TOKEN: 't' }).s3,
    ).toEqual({
      bucket: 'b',
      endpoint: undefined,
      region: 'us-east-1',
      accessKeyId: 'k',
      secretAccessKey: 's',
      sessionToken: 't',
    });
    // No key: S3Store leaves credentials to the chain (tested against a real S3 server in core/storage/s3.test.ts).
    expect(serverConfig([], { ...complete, AWS_REGION: 'eu-west-1' }).s3).toEqual({ bucket: 'b', endpoint: undefined, region: 'eu-west-1' });
    expect(refusal([], { ...complete, SPLITFROZEN_S3_ACCESS_KEY_ID: 'k' })).toEqual([
      "SPLITFROZEN_S3_SECRET_ACCESS_KEY is not set, but SPLITFROZEN_S3_ACCESS_KEY_ID is: set both, or neither to use the AWS SDK's credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, an instance role)",
    ]);
  });
});
