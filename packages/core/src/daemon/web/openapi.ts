/** The OpenAPI 3.1 document of the dashboard's API (served at /api/openapi.json). */
export const OPENAPI_DOCUMENT: Record<string, unknown> = { openapi: '3.1.0', info: { title: 'cairn daemon API', version: '0.1.0' }, paths: {} };
