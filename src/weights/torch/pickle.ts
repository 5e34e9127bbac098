/**
 * A strict unpickler for PyTorch state_dicts. A .pth file is a Python pickle, and a pickle is a
 * program for a stack machine that may call any Python function it names (`os.system` included):
 * loading one with Python's pickle runs whatever the file says. This one runs nothing. It knows the
 * opcodes that torch.save emits for a dict of tensors (protocols 2-4) and exactly the globals such a
 * dict needs, and refuses anything else with one line naming it.
 *
 * Opcode meanings: CPython's Lib/pickletools.py. Every length is checked against the bytes left, so
 * a hostile length never allocates more than the file holds.
 */

/** A tensor as the pickle describes it: the bytes live in a storage, read afterwards by key. */
export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

/** A persistent id ('storage', type, key, location, numel[, view]) resolved by the caller. */
export interface StorageRef {
  readonly kind: 'storage';
  readonly dtype: StorageDtype;
  readonly key: string;
  readonly numel: number;
}

export type StorageDtype = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';

/** The torch storage classes a state_dict may name, and what they hold. */
const STORAGES: Record<string, StorageDtype> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  DoubleStorage: 'float64',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** The globals a state_dict needs; any other name is refused. */
type Global = { kind: 'global'; name: 'OrderedDict' | 'rebuild_tensor' | 'rebuild_parameter' } | { kind: 'global'; name: 'storage'; dtype: StorageDtype };

function allowedGlobal(module: string, name: string): Global | undefined {
  if (module === 'collections' && name === 'OrderedDict') return { kind: 'global', name: 'OrderedDict' };
  if (module === 'torch._utils' && name === '_rebuild_tensor_v2') return { kind: 'global', name: 'rebuild_tensor' };
  if (module === 'torch._utils' && name === '_rebuild_parameter') return { kind: 'global', name: 'rebuild_parameter' };
  if (module === 'torch' && STORAGES[name]) return { kind: 'global', name: 'storage', dtype: STORAGES[name]! };
  return undefined;
}

export type PickleValue = null | boolean | number | bigint | string | PickleValue[] | Tuple | Map<PickleValue, PickleValue> | TensorRef | StorageRef | Global;

/** Tuples and lists differ only in mutability; tuples are marked so that misuse is caught. */
class Tuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A refusal or a malformed pickle; the caller adds the file name. */
export class PickleError extends Error {}

const MARK = Symbol('mark');

export interface UnpickleOptions {
  /** Turns a persistent id (a tuple) into a storage; BINPERSID is refused without it. */
  readonly persistentLoad?: (id: readonly PickleValue[]) => StorageRef;
}

/** Runs the pickle at `bytes[start]`; returns its value and where it stopped (after STOP). */
export function unpickle(bytes: Uint8Array, start = 0, o: UnpickleOptions = {}): { value: PickleValue; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: (PickleValue | typeof MARK)[] = [];
  const memo = new Map<number, PickleValue>();
  let p = start;
  const need = (n: number, what: string) => {
    if (n < 0 || p + n > bytes.length) throw new PickleError(`the pickle ends inside ${what}`);
  };
  const u8 = () => (need(1, 'an argument'), bytes[p++]!);
  const u32 = () => {
    need(4, 'an argument');
    const v = view.getUint32(p, true);
    p += 4;
    return v;
  };
  const text = (n: number, what: string, latin1 = false) => {
    need(n, what);
    if (latin1 && n > 4096) throw new PickleError('a byte string longer than a state_dict needs');
    let s: string;
    try {
      s = latin1 ? String.fromCharCode(...bytes.subarray(p, p + n)) : new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(p, p + n));
    } catch {
      throw new PickleError(`${what} that is not UTF-8`);
    }
    p += n;
    return s;
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0 || end - p > 256) throw new PickleError('a GLOBAL without its name');
    const s = String.fromCharCode(...bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw new PickleError('the pickle pops an empty stack');
    return v;
  };
  const popMark = (): PickleValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new PickleError('the pickle has no MARK to return to');
    const items = stack.splice(i) as PickleValue[];
    items.shift();
    return items;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw new PickleError('the pickle reads an empty stack');
    return v;
  };
  const setItems = (target: PickleValue, items: PickleValue[]) => {
    if (!(target instanceof Map)) throw new PickleError('SETITEM on something that is not a dict');
    if (items.length % 2) throw new PickleError('SETITEMS with a key and no value');
    for (let i = 0; i < items.length; i += 2) target.set(items[i]!, items[i + 1]!);
  };
  const global = (module: string, name: string): Global => {
    const g = allowedGlobal(module, name);
    if (!g) throw new PickleError(`it names the Python global ${module}.${name}, which a state_dict never needs (a .pth can carry code: Pastiche runs none)`);
    return g;
  };

  for (;;) {
    if (p >= bytes.length) throw new PickleError('the pickle ends without STOP');
    const op = bytes[p++]!;
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw new PickleError('an unknown pickle protocol');
        break;
      case 0x95: // FRAME: a length hint, nothing to do
        need(8, 'FRAME');
        p += 8;
        break;
      case 0x2e: // STOP
        return { value: pop(), end: p };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
      case 0x89: // NEWFALSE
        stack.push(op === 0x88);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        need(2, 'BININT2');
        stack.push(view.getUint16(p, true));
        p += 2;
        break;
      case 0x4a: // BININT
        need(4, 'BININT');
        stack.push(view.getInt32(p, true));
        p += 4;
        break;
      case 0x8a: {
        // LONG1: a little-endian two's-complement integer of n bytes
        const n = u8();
        if (n > 16) throw new PickleError('an integer wider than a state_dict needs');
        need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[p + i]!);
        if (n > 0 && bytes[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8, 'BINFLOAT');
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8(), 'a string'));
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32(), 'a string'));
        break;
      case 0x8d: {
        // BINUNICODE8
        need(8, 'BINUNICODE8');
        const n = Number(view.getBigUint64(p, true));
        p += 8;
        stack.push(text(n, 'a string'));
        break;
      }
      case 0x55: // SHORT_BINSTRING (Python 2 str)
        stack.push(text(u8(), 'a byte string', true));
        break;
      case 0x54: // BINSTRING
        stack.push(text(u32(), 'a byte string', true));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw new PickleError(`the pickle reads memo ${k}, which it never wrote`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x74: // TUPLE
        stack.push(new Tuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        const items: PickleValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new Tuple(items));
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) throw new PickleError('APPEND to something that is not a list');
        list.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw new PickleError('APPENDS to something that is not a list');
        list.push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: // GLOBAL
        stack.push(global(line(), line()));
        break;
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new PickleError('STACK_GLOBAL without names');
        stack.push(global(module, name));
        break;
      }
      case 0x51: {
        // BINPERSID
        const id = pop();
        if (!(id instanceof Tuple) || !o.persistentLoad) throw new PickleError('a persistent id this reader does not know');
        stack.push(o.persistentLoad(id.items));
        break;
      }
      case 0x52: // REDUCE
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args), the same for the classes allowed here
        const args = pop();
        const fn = pop();
        if (!(args instanceof Tuple)) throw new PickleError('REDUCE without an argument tuple');
        stack.push(call(fn, args.items));
        break;
      }
      case 0x62: {
        // BUILD: sets an object's state; a state_dict's dict only gets its `_metadata`
        const state = pop();
        const obj = top();
        if (!(obj instanceof Map) || !(state instanceof Map || state === null)) throw new PickleError('BUILD on something that is not a dict');
        break;
      }
      default:
        throw new PickleError(`pickle opcode 0x${op.toString(16).padStart(2, '0')} is not one a state_dict uses`);
    }
  }
}

function call(fn: PickleValue, args: PickleValue[]): PickleValue {
  if (typeof fn !== 'object' || fn === null || !('kind' in fn) || fn.kind !== 'global') throw new PickleError('REDUCE calls something that is not a known function');
  switch (fn.name) {
    case 'OrderedDict':
      if (args.length !== 0) throw new PickleError('OrderedDict with arguments');
      return new Map();
    case 'rebuild_tensor': {
      // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const [storage, offset, size, stride] = args;
      const ints = (v: PickleValue | undefined) => (v instanceof Tuple && v.items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) ? (v.items as number[]) : undefined);
      const shape = ints(size);
      const strides = ints(stride);
      if (!(storage && typeof storage === 'object' && 'kind' in storage && storage.kind === 'storage') || typeof offset !== 'number' || !shape || !strides || shape.length !== strides.length) {
        throw new PickleError('_rebuild_tensor_v2 with arguments a tensor does not have');
      }
      return { kind: 'tensor', storage, offset, shape, stride: strides };
    }
    case 'rebuild_parameter': {
      const [data] = args;
      if (!(data && typeof data === 'object' && 'kind' in data && data.kind === 'tensor')) throw new PickleError('_rebuild_parameter without a tensor');
      return data;
    }
    case 'storage':
      throw new PickleError('a storage class is called, not referenced');
  }
}

/** The storage class named in a persistent id, as a dtype. */
export function storageDtype(v: PickleValue | undefined): StorageDtype | undefined {
  return v && typeof v === 'object' && 'kind' in v && v.kind === 'global' && v.name === 'storage' ? v.dtype : undefined;
}

/** A dict's string keys and tensor values (what a state_dict is), or why it is not one. */
export function asStateDict(v: PickleValue): Map<string, TensorRef> {
  if (!(v instanceof Map)) throw new PickleError('it holds no dict of tensors (a state_dict)');
  // A training checkpoint often wraps it: { 'state_dict': {...}, 'epoch': ... }.
  const inner = v.get('state_dict');
  if (inner instanceof Map) v = inner;
  const out = new Map<string, TensorRef>();
  for (const [k, t] of v) {
    if (typeof k !== 'string') throw new PickleError('a state_dict key is not text');
    if (t && typeof t === 'object' && 'kind' in t && t.kind === 'tensor') out.set(k, t);
  }
  return out;
}

