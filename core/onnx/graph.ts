/** A small builder for ONNX graphs on top of the protobuf types of onnx.proto (npm onnx-proto). */
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;
export type DataType = onnxProto.onnx.TensorProto.DataType;
export const DT = onnx.TensorProto.DataType;

type AttrValue = number | number[] | string;

interface ValueInfo {
  name: string;
  type: DataType;
  /** Numbers are fixed sizes, strings name symbolic dimensions (batch, sequence); undefined: any shape. */
  dims?: Array<number | string>;
}

function valueInfo({ name, type, dims }: ValueInfo): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: type,
        shape: dims && { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue, floatAttr: boolean): onnxProto.onnx.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  return floatAttr ? { name, type: A.FLOAT, f: value } : { name, type: A.INT, i: value };
}

/** Attributes that ONNX declares as floats (all others given as numbers are ints). */
const FLOAT_ATTRIBUTES = new Set(['epsilon', 'alpha', 'beta']);

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly constants = new Map<string, string>();
  private readonly domains = new Set<string>();
  private count = 0;

  /** Adds a weight or constant; returns its name. */
  initializer(name: string, type: DataType, dims: number[], data: ArrayBufferView): string {
    this.initializers.push({
      name,
      dataType: type,
      dims,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** A float32 scalar constant (deduplicated). */
  float(value: number): string {
    return this.constant(`f32:${value}`, () => this.initializer(`const_f${this.constants.size}`, DT.FLOAT, [], new Float32Array([value])));
  }

  /** An int64 constant vector (or scalar when `scalar` is set), deduplicated. */
  ints(values: number[], scalar = false): string {
    return this.constant(`i64:${scalar}:${values}`, () =>
      this.initializer(`const_i${this.constants.size}`, DT.INT64, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt))),
    );
  }

  private constant(key: string, make: () => string): string {
    let name = this.constants.get(key);
    if (!name) this.constants.set(key, (name = make()));
    return name;
  }

  /** Adds a node; returns its output names. */
  node(opType: string, inputs: string[], attributes: Record<string, AttrValue> = {}, outputs = 1, domain = ''): string[] {
    if (domain) this.domains.add(domain);
    const names = Array.from({ length: outputs }, (_, i) => `${opType}_${this.count}${outputs > 1 ? `_${i}` : ''}`);
    this.count++;
    this.nodes.push({
      opType,
      input: inputs,
      output: names,
      name: `${opType}_${this.count}`,
      domain,
      attribute: Object.entries(attributes).map(([k, v]) => attribute(k, v, FLOAT_ATTRIBUTES.has(k))),
    });
    return names;
  }

  /** Single-output node. */
  op(opType: string, inputs: string[], attributes: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(opType, inputs, attributes, 1, domain)[0];
  }

  /** Every name some node reads: the graph inputs it really uses among those it might. */
  usedNames(): Set<string> {
    return new Set(this.nodes.flatMap((n) => n.input ?? []));
  }

  /** Encodes the model. `outputs` renames the final values to the graph's output names. */
  build(options: BuildOptions): Uint8Array {
    return onnx.ModelProto.encode(this.model(options)).finish();
  }

  /**
   * Encodes the model with its initializers as ONNX external data: the graph (a few KB) and one data file, named
   * `location` inside the graph, which a session is given beside it (onnxruntime's `externalData` option). The
   * runtime then holds the weights once, not once in the protobuf and once as tensors.
   */
  buildExternal(options: BuildOptions, location: string): { onnx: Uint8Array; data: Uint8Array } {
    const model = this.model(options);
    // Constants (axes, shapes, scalars) stay inline: shape inference reads them before any external data is loaded.
    const weights = model.graph!.initializer!.filter((t) => t.rawData!.byteLength >= EXTERNAL_MIN_BYTES);
    const data = new Uint8Array(weights.reduce((a, t) => a + align(t.rawData!.byteLength), 0));
    let offset = 0;
    for (const t of weights) {
      const raw = t.rawData!;
      data.set(raw, offset);
      t.rawData = undefined;
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      t.externalData = [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.byteLength) },
      ];
      offset += align(raw.byteLength);
    }
    return { onnx: onnx.ModelProto.encode(model).finish(), data };
  }

  private model(options: BuildOptions): onnxProto.onnx.ModelProto {
    for (const out of options.outputs) {
      // The node that makes the value writes the output itself (no copy), unless the value is a graph input or
      // another output already took it.
      const producer = this.nodes.find((n) => n.output?.includes(out.from));
      if (producer && !options.outputs.some((o) => o !== out && o.from === out.from)) {
        producer.output = producer.output!.map((x) => (x === out.from ? out.name : x));
        for (const n of this.nodes) n.input = n.input?.map((x) => (x === out.from ? out.name : x));
      } else this.nodes.push({ opType: 'Identity', input: [out.from], output: [out.name], name: `output_${out.name}` });
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'splitfrozen',
      // Contrib domains (com.microsoft) are versioned 1 in onnxruntime.
      opsetImport: [{ domain: '', version: options.opset }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      metadataProps: Object.entries(options.metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name: options.name,
        node: this.nodes,
        initializer: this.initializers,
        input: options.inputs.map(valueInfo),
        output: options.outputs.map(valueInfo),
      },
    });
    return model;
  }
}

interface BuildOptions {
  name: string;
  inputs: ValueInfo[];
  outputs: Array<ValueInfo & { from: string }>;
  opset: number;
  metadata: Record<string, string>;
}

const EXTERNAL_MIN_BYTES = 1024;

/** Tensors start on 64-byte boundaries in an external data file. */
const align = (n: number) => Math.ceil(n / 64) * 64;
