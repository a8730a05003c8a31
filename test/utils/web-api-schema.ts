import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'vitest';

/*
 * Checks API responses against the OpenAPI document the daemon serves: the schema of the
 * path's operation for the response's status, compiled with ajv (JSON Schema 2020-12, which
 * OpenAPI 3.1 uses).
 */
export class ApiSchemaChecker {
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  readonly #doc: any;
  /** Paths and statuses checked so far, `GET /api/jobs 200`. */
  readonly checked = new Set<string>();

  constructor(doc: any) {
    this.#doc = doc;
    this.#ajv.addSchema({ $id: 'https://cairn.invalid/openapi.json', components: doc.components }, 'openapi');
  }

  /** The operation's schema for `status`, its `$ref`s resolved against the document. */
  schemaFor(method: string, template: string, status: number): object {
    const operation = this.#doc.paths[template]?.[method.toLowerCase()];
    if (!operation) throw new Error(`The OpenAPI document has no ${method} ${template}`);
    let response = operation.responses[String(status)];
    if (!response) throw new Error(`The OpenAPI document has no ${status} response for ${method} ${template}`);
    if (response.$ref) response = this.#doc.components.responses[response.$ref.split('/').at(-1)];
    return response.content['application/json'].schema;
  }

  /** Asserts `body` is what the document says `method template` answers with `status`; returns the body. */
  check<T = any>(method: string, template: string, status: number, body: T): T {
    const key = `${method} ${template} ${status}`;
    const validate = this.#ajv.getSchema(key) ?? (this.#ajv.addSchema({ allOf: [absoluteRefs(this.schemaFor(method, template, status))] }, key), this.#ajv.getSchema(key)!);
    const valid = validate(body);
    expect(valid, `${key}: ${JSON.stringify(validate.errors, null, 1)}\n${JSON.stringify(body).slice(0, 2000)}`).toBe(true);
    this.checked.add(key);
    return body;
  }
}

/** The schema with its `#/components/…` references pointing into the document added as `openapi`. */
function absoluteRefs(schema: object): object {
  return JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"https://cairn.invalid/openapi.json#/components/'));
}
