/** Starts the loopback introspection endpoint (introspection-stub.ts) and hands the tests its URL. */
import type { TestProject } from 'vitest/node'
import { startIntrospectionStub } from './introspection-stub'

declare module 'vitest' {
  export interface ProvidedContext {
    introspectionStubUrl: string
  }
}

export default async function ({ provide }: TestProject) {
  const { url, server } = await startIntrospectionStub()
  provide('introspectionStubUrl', url)
  return () => new Promise<void>((r) => server.close(() => r()))
}
