/**
 * What npm start's owners approve their segments with, and how its privacy column replays a device's setting. On the
 * generated task each owner loads groups of similar tokens built from public text of the task's kind and approves
 * randomised response at epsilon 0 within them (docs/privacy/README.md: the setting that keeps both the text and the
 * accuracy there); elsewhere the devices' own default. --defence overrides both.
 */
import { LEVELS, parseDefence, type Defence } from '../core/privacy/defence.ts';
import type { TokenGroups } from '../core/privacy/groups.ts';
import type { Tokenizer } from '../core/tokenizer/tokenizer.ts';
import { encodeTexts, publicGroups, tokenRows, type DeviceSetting } from '../experiments/privacy.ts';
import { GROUPS_DEFAULT_SIZE, publicGeneratedText } from '../experiments/privacy-sweep.ts';
import type { RunningDevice } from '../infra/local/device.ts';

export interface OwnersDefence {
  /** What each owner's approval names (nothing: the device's DEFENCE default). */
  approval(device: RunningDevice): Promise<{ defence?: Defence }>;
  /** A device's setting as the attack suite replays it. */
  setting(defence: Defence): DeviceSetting;
}

export function ownersDefence(arg: string | undefined, { generated, tokenizer }: { generated: boolean; tokenizer: Tokenizer }): OwnersDefence {
  const groups = arg === 'groups' || (arg === undefined && generated);
  let table: TokenGroups | undefined;
  if (groups) {
    if (!generated)
      throw new Error('--defence groups: npm start builds groups from public text of the generated task only (use it without --data and --task gsm8k)');
    table = publicGroups(tokenizer, tokenRows(encodeTexts(tokenizer, publicGeneratedText(), 48)), GROUPS_DEFAULT_SIZE);
  }
  const chosen = groups || arg === undefined ? undefined : parseDefence(arg, '--defence');
  return {
    approval: async (device) =>
      table ? { defence: { mechanism: 'groups', epsilon: 0, groups: await device.putGroups(table) } } : chosen ? { defence: chosen } : {},
    setting: (defence) =>
      defence.mechanism === 'groups' ? { kind: 'groups', epsilon: defence.epsilon, minSize: GROUPS_DEFAULT_SIZE, table } : { kind: 'output', defence },
  };
}

export const DEFENCE_CHOICES = [...Object.keys(LEVELS), 'groups'].join('|');
