// inproc.mjs only: lets a bundle that defines Durable Object classes load in Node. No object is
// ever constructed there (the bench binds none), so the base class needs no behaviour.
export class DurableObject {}
