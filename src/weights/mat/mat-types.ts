/** The values a MATLAB level-5 file holds, as the reader returns them. */

export type NumericClass =
  | 'double' | 'single'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64';

export type NumericData =
  | Float64Array | Float32Array
  | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array
  | BigInt64Array | BigUint64Array;

export interface MatNumeric {
  readonly kind: 'numeric';
  readonly class: NumericClass;
  /** MATLAB dimensions; data is in column-major (Fortran) order. */
  readonly dims: number[];
  /** The real part, typed by the MATLAB class (a double array stored as uint8 is widened). */
  readonly data: NumericData;
  readonly logical: boolean;
  readonly complex: boolean;
}

export interface MatChar {
  readonly kind: 'char';
  readonly dims: number[];
  /** Rows of a char matrix joined by '\n' (a 1xN char array is one row). */
  readonly text: string;
}

export interface MatCell {
  readonly kind: 'cell';
  readonly dims: number[];
  /** Elements in column-major order. */
  readonly items: MatValue[];
}

export interface MatStruct {
  readonly kind: 'struct';
  readonly dims: number[];
  readonly fields: string[];
  /** One record per struct element, column-major. */
  readonly elements: Record<string, MatValue>[];
}

/** A class the reader recognises but does not decode (sparse, objects, function handles...). */
export interface MatUnsupported {
  readonly kind: 'unsupported';
  readonly class: string;
  readonly dims: number[];
}

export type MatValue = MatNumeric | MatChar | MatCell | MatStruct | MatUnsupported;
