// See https://svelte.dev/docs/kit/types#app.d.ts
declare global {
  namespace App {
    interface Locals {
      /** Who the request is for (a demo login: the `user` cookie, else "demo"). */
      userId: string;
    }
  }
}

export {};
