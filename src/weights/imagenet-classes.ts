/**
 * The 1000 ILSVRC-2012 class descriptions in the standard synset order, which torchvision, Caffe and
 * Keras models share (MatConvNet files carry their own). From data/imagenet-classes.txt.
 */
import { readFileSync } from 'node:fs';

let classes: string[] | undefined;

export function imagenetClasses(): string[] {
  classes ??= readFileSync(new URL('../../../data/imagenet-classes.txt', import.meta.url), 'utf8').trimEnd().split('\n');
  return classes;
}
