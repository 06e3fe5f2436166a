// A first-in, first-out queue whose front is taken in constant time. Array#shift moves every
// element behind the front (V8 avoids that only for small arrays), and both a daemon connection's
// unanswered requests and a channel's unread lines can number in the tens of thousands.

export class Queue<T> {
  #items: Array<T | undefined> = []
  #head = 0

  get size(): number {
    return this.#items.length - this.#head
  }

  push(item: T): void {
    this.#items.push(item)
  }

  /** The front item, left in place; undefined when the queue is empty. */
  peek(): T | undefined {
    return this.size > 0 ? this.#items[this.#head] : undefined
  }

  /** Removes and returns the front item; undefined when the queue is empty. */
  shift(): T | undefined {
    if (this.size === 0) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined // taken items are not kept alive by the queue
    // the taken front is dropped once it is most of the array: each item is copied at most once
    // on average, and a queue that never runs empty does not grow without end
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /** Empties the queue and returns what it held, front first. */
  takeAll(): T[] {
    const all = this.#items.slice(this.#head) as T[]
    this.#items = []
    this.#head = 0
    return all
  }
}
