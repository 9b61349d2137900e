/** Starts the loopback issuer/origin stub for the workerd tests and hands them its URL. */
import type { TestProject } from 'vitest/node'
import { startStub } from './stub'

declare module 'vitest' {
  export interface ProvidedContext {
    stubUrl: string
  }
}

export default async function ({ provide }: TestProject) {
  const { url, server } = await startStub()
  provide('stubUrl', url)
  return () => new Promise<void>((r) => server.close(() => r()))
}
