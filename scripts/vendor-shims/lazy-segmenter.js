// Stands in for `Intl.Segmenter` in the vendor bundle (scripts/bundle-vendor.mjs): string-width
// constructs one when it is imported, and the constructor loads ICU's break-iterator data
// (about 10 ms on every cairn command). This one constructs the real segmenter on first use;
// string-width segments only text that is not printable ASCII, which cairn's help text is.
// Destructured: the bundle's `define` rewrites every `Intl.Segmenter`, this file's too.
const { Segmenter } = Intl;

export class LazySegmenter {
  #args;
  #segmenter;

  constructor(...args) {
    this.#args = args;
  }

  #real() {
    return (this.#segmenter ??= new Segmenter(...this.#args));
  }

  segment(text) {
    return this.#real().segment(text);
  }

  resolvedOptions() {
    return this.#real().resolvedOptions();
  }
}
