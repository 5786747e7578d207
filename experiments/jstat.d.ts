/** The part of jstat (which ships no types) the experiments use: Student's t distribution. */
declare module 'jstat' {
  const jStat: { studentt: { cdf(x: number, dof: number): number } };
  export default jStat;
}
